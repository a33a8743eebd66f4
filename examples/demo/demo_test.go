package demo

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

// runDemo runs the demo on free ports until its tour has printed and
// returns what it printed.
func runDemo(t *testing.T, o Options) string {
	t.Helper()
	out := &syncWriter{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out.ready = cancel
	o.Port, o.Out = 0, out
	if o.Logger == nil {
		o.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !bytes.Contains([]byte(text), []byte("Stop with Ctrl-C")) {
		t.Fatalf("the demo stopped before its tour ended:\n%s", text)
	}
	return text
}

func checkRouting(t *testing.T, text string) {
	t.Helper()
	m := regexp.MustCompile(`canary split over 200 requests to /reviews: v1=(\d+) v2=(\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no split line in:\n%s", text)
	}
	v1, _ := strconv.Atoi(m[1])
	v2, _ := strconv.Atoi(m[2])
	if v1+v2 != 200 || v2 < 3 || v2 > 45 {
		t.Fatalf("split v1=%d v2=%d, want 200 requests about 90/10", v1, v2)
	}
	if !regexp.MustCompile(`x-canary: always, 20 requests: v2=20`).MatchString(text) {
		t.Fatalf("A/B line wrong:\n%s", text)
	}
	if !regexp.MustCompile(`100 requests to /ratings: 100 succeeded`).MatchString(text) {
		t.Fatalf("retries did not hide the failures:\n%s", text)
	}
}

// checkGRPC checks the gRPC part of the tour: calls through the sidecar
// balanced over both servers, one leaving the balancer while it says
// NOT_SERVING and coming back, and the commands to try it.
func checkGRPC(t *testing.T, text string) {
	t.Helper()
	for _, want := range []string{
		`gRPC through the sidecar \(h2c, routed by service grpc\.testing\.TestService\): 10 UnaryCalls answered by grpc-a=5 grpc-b=5; a server stream of 3 messages from grpc-[ab]; Health/Check: SERVING\n`,
		`gRPC health check: grpc-a set NOT_SERVING; the sidecar's checks took it out of the balancer in \S+; 10 UnaryCalls answered by grpc-b=10\n`,
		`gRPC health check: grpc-a SERVING again; the sidecar's checks put it back in the balancer in \S+; 10 UnaryCalls answered by grpc-a=5 grpc-b=5\n`,
		`grpcurl -plaintext 127\.0\.0\.1:\d+ list `,
		`grpcurl -plaintext -v -d '\{"response_size": 3\}' 127\.0\.0\.1:\d+ grpc\.testing\.TestService/UnaryCall `,
		`go run \./examples/demo/grpccall -addr 127\.0\.0\.1:\d+ `,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("the demo's output lacks %q:\n%s", want, text)
		}
	}
}

// split reads the v1 and v2 counts of the first line matching re (whose
// last two groups are the counts).
func split(t *testing.T, text, re string) (v1, v2 int) {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no line matching %q in:\n%s", re, text)
	}
	v1, _ = strconv.Atoi(m[len(m)-2])
	v2, _ = strconv.Atoi(m[len(m)-1])
	return v1, v2
}

// checkLiveChange checks the control plane part of the tour: the sidecar it
// drives split reviews about 90/10, the set-weight call was accepted, the
// sidecar applied and ACKed exactly the revision it made, and the split
// then moved to about 50/50. It also checks the control plane's temporary
// data directory is gone once Run returned.
func checkLiveChange(t *testing.T, text string) {
	t.Helper()
	v1, v2 := split(t, text, `200 requests to reviews through sidecar demo-app: v1=(\d+) v2=(\d+) \(TrafficRule reviews splits 90/10\)`)
	// Binomial(200, 0.1): mean 20, sd 4.2; 3..45 is about 4 sd below and 6 above.
	if v1+v2 != 200 || v2 < 3 || v2 > 45 {
		t.Errorf("before the change: v1=%d v2=%d, want 200 requests about 90/10", v1, v2)
	}
	m := regexp.MustCompile(`set-weight reviews v1=50,v2=50 through its API \(as weft ctl does\): TrafficRule default/reviews: changed, revision (\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no accepted set-weight in:\n%s", text)
	}
	rev := m[1]
	m = regexp.MustCompile(`sidecar demo-app applied version (\d+) \(was (\d+)\) and ACKed it, .* \(/v1/status: desired (\d+), applied (\d+), in_sync true\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the sidecar did not report applying the change:\n%s", text)
	}
	if m[1] != rev || m[3] != rev || m[4] != rev || m[2] == rev {
		t.Errorf("applied version %s (was %s, desired %s, applied %s), want the set-weight revision %s", m[1], m[2], m[3], m[4], rev)
	}
	a1, a2 := split(t, text, `200 requests to reviews through sidecar demo-app after the change: v1=(\d+) v2=(\d+) \(now 50/50\)`)
	// Binomial(200, 0.5): mean 100, sd 7.1; 60..140 is about 5.7 sd.
	if a1+a2 != 200 || a1 < 60 || a2 < 60 {
		t.Errorf("after the change: v1=%d v2=%d, want 200 requests about 50/50", a1, a2)
	}
	if a2 <= v2 {
		t.Errorf("v2's share did not grow: %d of 200 before the change, %d after", v2, a2)
	}
	for _, want := range []string{
		`go run ./cmd/weft ctl -server https://127\.0\.0\.1:\d+ -ca \S+/ca\.pem -token-file \S+/admin\.token set-weight reviews v1=50,v2=50 `,
		`curl -s --cacert \S+/ca\.pem -H "Authorization: Bearer \$\(cat \S+/admin\.token\)" https://127\.0\.0\.1:\d+/v1/status`,
		`  https://127\.0\.0\.1:\d+/ui#token=wot_\S+ +# in a browser`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("the Try section lacks %q:\n%s", want, text)
		}
	}
	d := regexp.MustCompile(`state in ([^,]+), removed at exit`).FindStringSubmatch(text)
	if d == nil {
		t.Fatalf("no data directory in:\n%s", text)
	}
	if _, err := os.Stat(d[1]); !os.IsNotExist(err) {
		t.Errorf("the control plane's data directory %s is still there after Run returned (%v)", d[1], err)
	}
}

// TestDemoRunsThePlugins runs the demo as `weft demo` does: it builds the
// first-party plugins from plugins/ (cached by source digest) and its tour
// shows each one working: the routing plugin's split, the auth plugin's
// 401s and accepted token, the fault plugin's abort, and the telemetry
// plugin's counters as /stats/prometheus exports them.
func TestDemoRunsThePlugins(t *testing.T) {
	cache := filepath.Join(os.TempDir(), "weft-demo-test-cache")
	text := runDemo(t, Options{CacheDir: cache})
	t.Logf("demo output:\n%s", text)
	if !regexp.MustCompile(`plugins: auth, fault, routing, telemetry (built from plugins/|from the cache)`).MatchString(text) {
		t.Fatalf("plugins not loaded:\n%s", text)
	}
	checkRouting(t, text)
	checkGRPC(t, text)
	checkLiveChange(t, text)
	if !regexp.MustCompile(`chosen by the routing plugin`).MatchString(text) {
		t.Errorf("split not credited to the routing plugin:\n%s", text)
	}
	for _, want := range []string{
		`without a token: 401 \(www-authenticate: Bearer realm="demo"\); forged signature: 401; accounts service saw 0 of them`,
		`with the demo's HS256 token: 200, the service saw x-user=demo-user`,
		`x-chaos: on: 3 of 3 answered 503 by the plugin \(x-weft-fault: abort\) after its 150ms delay .*; ratings saw 0 of them`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("tour lacks %q:\n%s", want, text)
		}
	}
	// The telemetry counters, as printed from /stats/prometheus.
	got := map[string]int{}
	re := regexp.MustCompile(`name="demo_requests_total\{route=([^,]+),code=(\d+)\}",plugin="telemetry"\} (\d+)`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[3])
		got[m[1]+" "+m[2]] += n
	}
	if n := got["reviews 200"] + got["reviews-v2 200"]; n != 220 {
		t.Errorf("telemetry counted %d answered /reviews requests, want 220 (200 split + 20 A/B): %v", n, got)
	}
	for k, want := range map[string]int{"account 401": 2, "account 200": 1, "ratings 200": 100, "ratings 503": 3} {
		if got[k] != want {
			t.Errorf("telemetry counter %s = %d, want %d (all: %v)", k, got[k], want, got)
		}
	}
}

// TestDemoWithoutPlugins checks the fallback: the route table does the
// split and the tour says the plugins are off.
func TestDemoWithoutPlugins(t *testing.T) {
	text := runDemo(t, Options{NoPlugins: true})
	if !regexp.MustCompile(`plugins: off`).MatchString(text) {
		t.Fatalf("no plugin note:\n%s", text)
	}
	t.Logf("demo output:\n%s", text)
	checkRouting(t, text)
	checkGRPC(t, text)
	checkLiveChange(t, text)
	if !regexp.MustCompile(`chosen by the route table`).MatchString(text) {
		t.Errorf("split not credited to the route table:\n%s", text)
	}
	if regexp.MustCompile(`auth plugin|fault plugin|telemetry plugin`).MatchString(text) {
		t.Errorf("plugin lines without plugins:\n%s", text)
	}
}

// syncWriter collects output and ends the demo once the tour has printed.
type syncWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready context.CancelFunc
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.b.Write(p)
	if bytes.Contains(p, []byte("Stop with Ctrl-C")) {
		w.ready()
	}
	return n, err
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestPluginsAreCachedBySource checks the second start builds nothing: the
// same sources give the same cached modules, each a Wasm module.
func TestPluginsAreCachedBySource(t *testing.T) {
	cache := filepath.Join(os.TempDir(), "weft-demo-test-cache")
	first, err := buildPlugins(context.Background(), cache, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	second, err := buildPlugins(context.Background(), cache, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if !second.cached || progress.Len() != 0 {
		t.Fatalf("second build not from the cache (cached=%v, progress %q)", second.cached, progress.String())
	}
	for _, n := range pluginNames {
		if first.paths[n] != second.paths[n] {
			t.Errorf("plugin %s: %s then %s", n, first.paths[n], second.paths[n])
		}
		b, err := os.ReadFile(second.paths[n])
		if err != nil || len(b) < 8 || string(b[:4]) != "\x00asm" {
			t.Errorf("plugin %s: %s is not a Wasm module (%v)", n, second.paths[n], err)
		}
	}
}

// TestMeshResourcesCompile checks the embedded mesh the demo applies: it
// decodes strictly and compiles to one sidecar config whose reviews host
// sends testers (x-canary: always) to v2 and splits everyone else 90/10,
// and whose ratings route retries.
func TestMeshResourcesCompile(t *testing.T) {
	b, err := meshResources(meshData{ReviewsV1: "127.0.0.1:1001", ReviewsV2: "127.0.0.1:1002", Ratings: "127.0.0.1:1003",
		Accounts: "127.0.0.1:1004", Node: meshNode, Outbound: "127.0.0.1:0", V1Weight: canaryV1, V2Weight: canaryV2})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mesh.Decode("mesh.yaml.tmpl", b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := mesh.Compile(mesh.New(rs), mesh.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nc := out[meshNode]
	if len(out) != 1 || nc == nil {
		t.Fatalf("want one sidecar config, for %s; got %d", meshNode, len(out))
	}
	routes := map[string]config.Route{}
	for _, l := range nc.Config.Listeners {
		for _, vh := range l.VirtualHosts {
			for _, r := range vh.Routes {
				routes[r.Name] = r
			}
		}
	}
	testers, canary, ratings := routes["reviews.default/testers"], routes["reviews.default/canary"], routes["ratings.default/all"]
	if testers.Route == nil || testers.Route.Cluster != "reviews.default.v2" || len(testers.Match.Headers) != 1 {
		t.Errorf("testers route: %+v", testers)
	}
	if canary.Route == nil || len(canary.Route.WeightedClusters) != 2 ||
		canary.Route.WeightedClusters[0] != (config.WeightedCluster{Cluster: "reviews.default.v1", Weight: canaryV1}) ||
		canary.Route.WeightedClusters[1] != (config.WeightedCluster{Cluster: "reviews.default.v2", Weight: canaryV2}) {
		t.Errorf("canary route: %+v", canary.Route)
	}
	if ratings.Route == nil || ratings.Route.Retry == nil || ratings.Route.Retry.Attempts != 3 {
		t.Errorf("ratings route: %+v", ratings.Route)
	}
}

// TestMeshStartFailsCleanly starts the control plane part with the control
// plane's port already taken (as when `weft demo` finds Port+2 in use):
// startMesh says so, and what it made is gone (its data directory here,
// goroutines in TestMain).
func TestMeshStartFailsCleanly(t *testing.T) {
	var svcs []*service
	for _, n := range []string{"reviews-v1", "reviews-v2", "ratings", "accounts"} {
		s, err := startService(n, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.srv.Shutdown(); _ = s.ln.Close() }()
		svcs = append(svcs, s)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "weft-demo-control-*"))
	m, err := startMesh(t.Context(), zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		meshAddrs{control: taken.Addr().String(), outbound: "127.0.0.1:0", admin: "127.0.0.1:0"}, svcs)
	if err == nil {
		m.close()
		t.Fatal("startMesh succeeded with the control plane's port taken")
	}
	if want := "control plane on " + taken.Addr().String(); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q does not say %q and address already in use", err, want)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "weft-demo-control-*"))
	if len(after) > len(before) {
		t.Fatalf("data directories left: before %v, after %v", before, after)
	}
}
