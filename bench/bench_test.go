package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/bench/internal/leaktest"
	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/bench/report"
	"github.com/weftmesh/weft/bench/upstream"
	"github.com/weftmesh/weft/proxy/config"
)

// childEnv marks a test binary re-executed as `bench upstream|load`, the
// way the weft binary runs them when pinning.
const childEnv = "WEFT_BENCH_TEST_CHILD"

// weftBinEnv names a built weft binary for the weft scenario's test.
const weftBinEnv = "WEFT_BENCH_WEFT_BIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" && len(os.Args) > 2 && os.Args[1] == "bench" {
		if err := Command(context.Background(), os.Args[2:], os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Setenv(childEnv, "1") // inherited by the subprocesses the tests start
	leaktest.Main(m, goleak.Cleanup(removeWeft))
}

// removeWeft deletes the weft binary the tests built, then exits with code.
func removeWeft(code int) {
	if testWeftDir != "" {
		os.RemoveAll(testWeftDir)
	}
	os.Exit(code)
}

var (
	testWeftOnce sync.Once
	testWeftDir  string
	testWeftBin  string
	testWeftErr  error
)

// weftForTest returns a weft binary for the weft scenarios: $WEFT_BENCH_WEFT_BIN,
// or ./cmd/weft built once per test run (mostly from the build cache that
// `go test ./...` and `go vet` fill). Skipped with -short.
func weftForTest(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(weftBinEnv); bin != "" {
		return bin
	}
	if testing.Short() {
		t.Skip("-short: not building cmd/weft (set " + weftBinEnv + " to use a built one)")
	}
	testWeftOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			testWeftErr = err
			return
		}
		if testWeftDir, err = os.MkdirTemp("", "weft-bench-test-"); err != nil {
			testWeftErr = err
			return
		}
		bin := filepath.Join(testWeftDir, "weft")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/weft")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			testWeftErr = fmt.Errorf("go build ./cmd/weft: %v\n%s", err, out)
			return
		}
		testWeftBin = bin
	})
	if testWeftErr != nil {
		t.Fatal(testWeftErr)
	}
	return testWeftBin
}

// pidLog records every subprocess a run starts, and the members of their
// process groups, so a test can check none is left.
type pidLog struct {
	mu   sync.Mutex
	pids map[int]string
}

func (l *pidLog) trace(name string, pid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pids == nil {
		l.pids = map[int]string{}
	}
	l.pids[pid] = name
}

func (l *pidLog) addGroups(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for pgid, name := range l.pids {
		members, err := proc.Group(pgid)
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range members {
			l.pids[pid] = name + " (group member)"
		}
	}
}

func (l *pidLog) assertGone(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for pid, name := range l.pids {
		if proc.Alive(pid) {
			t.Errorf("%s (pid %d) is still running", name, pid)
		}
	}
}

func testRunner(t *testing.T, pin bool, log *pidLog) *runner {
	t.Helper()
	opts := Options{
		Pin: pin, LoadCPUs: "0", ServerCPUs: "1", SelfBin: os.Args[0],
		Upstream: upstream.Config{BodySize: 128},
		Logger:   zap.NewNop(),
	}
	if log != nil {
		opts.trace = log.trace
	}
	return &runner{opts: opts, tmp: t.TempDir()}
}

func needTaskset(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset not installed")
	}
}

// Each scenario starts, answers, and stops with no process left behind.
func TestScenarioLifecycle(t *testing.T) {
	tests := []struct {
		sc    Scenario
		pin   bool
		procs int // subprocesses the scenario starts itself
		needs string
	}{
		{Direct(), false, 0, ""},
		{Direct(), true, 1, "taskset"},
		{Nginx(), false, 1, "nginx"},
		{Nginx(), true, 2, "nginx"},
		{Weft(), false, 1, "weft"},
		{Weft(), true, 2, "weft"},
	}
	for _, tt := range tests {
		name := tt.sc.Name
		if tt.pin {
			name += "-pinned"
		}
		t.Run(name, func(t *testing.T) {
			if tt.needs == "nginx" {
				if _, err := lookPeer("nginx", "/usr/sbin/nginx"); err != nil {
					t.Skip(err)
				}
			}
			if tt.pin {
				needTaskset(t)
			}
			var log pidLog
			r := testRunner(t, tt.pin, &log)
			if tt.needs == "weft" {
				r.opts.WeftBin = weftForTest(t)
			}
			env := &Env{Dir: t.TempDir(), Logger: r.opts.Logger, name: tt.sc.Name, r: r}
			url, err := tt.sc.Setup(context.Background(), env)
			if err != nil {
				env.close()
				t.Fatal(err)
			}
			code, body, err := fasthttp.GetTimeout(nil, url, 5*time.Second)
			if err != nil || code != 200 || len(body) != 128 {
				env.close()
				t.Fatalf("GET %s: %d, %d bytes, %v; want 200 with the upstream's 128 bytes", url, code, len(body), err)
			}
			if len(log.pids) != tt.procs {
				t.Errorf("started %v, want %d subprocesses", log.pids, tt.procs)
			}
			log.addGroups(t)
			if tt.sc.Name == "nginx" && len(log.pids) < tt.procs+1 {
				t.Errorf("nginx group has %v: want master and worker", log.pids)
			}
			if err := env.close(); err != nil {
				t.Fatal(err)
			}
			log.assertGone(t)
			if _, _, err := fasthttp.GetTimeout(nil, url, time.Second); err == nil {
				t.Errorf("%s still answers after teardown", url)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func quickOptions(t *testing.T, log *pidLog, scenarios ...Scenario) Options {
	return Options{
		Scenarios: scenarios,
		Load: loadgen.Config{Connections: 4, Warmup: 200 * time.Millisecond, Duration: 700 * time.Millisecond,
			MaxRequests: 1_000_000, Timeout: 5 * time.Second},
		Quick:    true,
		SelfBin:  os.Args[0],
		Progress: testWriter{t},
		Logger:   newLogger(testWriter{t}, 0),
		trace:    log.trace,
	}
}

func TestRunQuickDirectAndNginx(t *testing.T) {
	var log pidLog
	scenarios := []Scenario{Direct(), Nginx(), {
		Name: "absent-peer",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			_, err := lookPeer("weft-bench-no-such-proxy")
			return "", err
		},
	}}
	rep, err := Run(context.Background(), quickOptions(t, &log, scenarios...))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]report.Scenario{}
	for _, s := range rep.Scenarios {
		byName[s.Name] = s
	}
	d := byName["direct"]
	if !d.OK() || d.Requests == 0 || d.CPU != nil || d.RPSRatio != 1 {
		t.Fatalf("direct: %+v", d)
	}
	if s := byName["absent-peer"]; s.Status != report.StatusSkipped || !strings.Contains(s.Reason, "not installed") {
		t.Fatalf("absent peer: %+v", s)
	}
	if n := byName["nginx"]; n.Status == report.StatusSkipped {
		t.Logf("nginx skipped: %s", n.Reason)
	} else {
		if !n.OK() || n.Requests == 0 || n.CPU == nil || n.CPU.Seconds <= 0 || n.CPU.PeakRSSBytes <= 0 || n.RPSRatio <= 0 {
			t.Fatalf("nginx: %+v cpu %+v", n, n.CPU)
		}
	}
	log.assertGone(t)

	dir := t.TempDir()
	if _, err := rep.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, report.FileMarkdown))
	if !strings.Contains(string(md), "| direct |") || !strings.Contains(string(md), "absent-peer: skipped") {
		t.Fatalf("markdown:\n%s", md)
	}
}

func TestRunPinnedUsesSubprocesses(t *testing.T) {
	needTaskset(t)
	var log pidLog
	opts := quickOptions(t, &log, Direct())
	opts.Pin, opts.LoadCPUs, opts.ServerCPUs = true, "0", "1"
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Scenarios[0]
	if !s.OK() || s.Requests == 0 || s.Latency.Count != s.Requests {
		t.Fatalf("pinned direct: %+v", s)
	}
	names := map[string]bool{}
	for _, n := range log.pids {
		names[n] = true
	}
	if !names["upstream"] || !names["load"] {
		t.Fatalf("subprocesses %v, want an upstream and a load generator", log.pids)
	}
	log.assertGone(t)
}

func TestQuickFailsOnErrors(t *testing.T) {
	var log pidLog
	flaky := Scenario{
		Name: "flaky",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			cfg := env.UpstreamConfig()
			cfg.FailRate = 0.5
			addr, err := env.StartUpstream(ctx, cfg)
			return "http://" + addr + "/", err
		},
	}
	rep, err := Run(context.Background(), quickOptions(t, &log, Direct(), flaky))
	if err == nil || !strings.Contains(err.Error(), "flaky") {
		t.Fatalf("err = %v, want the flaky scenario to fail the quick run", err)
	}
	if s := rep.Scenarios[1]; s.Status != report.StatusFailed || !strings.Contains(s.Reason, "not 2xx") {
		t.Fatalf("flaky: %+v", s)
	}
	if !rep.Scenarios[0].OK() {
		t.Fatalf("direct: %+v", rep.Scenarios[0])
	}
}

func TestSetupFailureStopsWhatStarted(t *testing.T) {
	var log pidLog
	broken := Scenario{
		Name: "broken",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			if _, err := env.StartProcess("sleeper", "/bin/sleep", "30"); err != nil {
				return "", err
			}
			return "", errors.New("config rejected")
		},
	}
	rep, err := Run(context.Background(), quickOptions(t, &log, broken))
	if err == nil || rep.Scenarios[0].Status != report.StatusFailed {
		t.Fatalf("err %v, scenario %+v", err, rep.Scenarios[0])
	}
	if len(log.pids) != 1 {
		t.Fatalf("started %v", log.pids)
	}
	log.assertGone(t)
}

func TestCommand(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := Command(context.Background(), []string{"-quick", "-scenarios", "direct", "-d", "1s", "-warmup", "100ms", "-out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for _, f := range []string{report.FileMarkdown, report.FileJSON, report.FileLatency, report.FileThroughput, report.FileCPU} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stdout.String(), "| direct |") || !strings.Contains(stderr.String(), "bench direct: measure") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	stdout.Reset()
	if err := Command(context.Background(), []string{"list"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, s := range DefaultScenarios() {
		if !strings.Contains(stdout.String(), s.Name) {
			t.Errorf("list lacks %s", s.Name)
		}
	}
	if err := Command(context.Background(), []string{"-scenarios", "nope"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Fatalf("err = %v", err)
	}
}

func TestWeftConfigIsValid(t *testing.T) {
	cfg := WeftConfig("127.0.0.1:10000", "127.0.0.1:9901", "127.0.0.1:8081")
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse("bench.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	l := back.Listeners[0]
	if back.Admin.Address != "127.0.0.1:9901" || l.Address != "127.0.0.1:10000" ||
		l.VirtualHosts[0].Domains[0] != "*" || l.VirtualHosts[0].Routes[0].Match.Prefix != "/" ||
		l.VirtualHosts[0].Routes[0].Route.Cluster != "up" || back.Clusters[0].Endpoints[0].Address != "127.0.0.1:8081" {
		t.Fatalf("config after a round trip:\n%s", data)
	}
}

func TestPeerConfigs(t *testing.T) {
	ng := nginxConfig("/tmp/x", "127.0.0.1:1", "127.0.0.1:2")
	for _, want := range []string{"worker_processes 1;", "daemon off;", "access_log off;", "keepalive 256;", "pid /tmp/x/nginx.pid;", "server 127.0.0.1:2;", "listen 127.0.0.1:1;", `proxy_set_header Connection "";`} {
		if !strings.Contains(ng, want) {
			t.Errorf("nginx config lacks %q", want)
		}
	}
	if h := haproxyConfig("/tmp/x", "127.0.0.1:1", "127.0.0.1:2", 4096); !strings.Contains(h, "nbthread 1") || !strings.Contains(h, "maxconn 4096") || !strings.Contains(h, "server up1 127.0.0.1:2") {
		t.Errorf("haproxy config:\n%s", h)
	}
	if c := caddyConfig("127.0.0.1:1", "127.0.0.1:2"); !strings.Contains(c, "reverse_proxy 127.0.0.1:2") || !strings.Contains(c, "admin off") {
		t.Errorf("caddy config:\n%s", c)
	}
}

// weft bench control end to end, small: real control planes (and etcd
// members when an etcd binary is installed), real sidecars; every run
// reports its figures and the report is written.
func TestControlCommand(t *testing.T) {
	weft := weftForTest(t)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := Command(context.Background(), []string{"control", "-weft-bin", weft, "-sidecars", "3", "-sizes", "3,2", "-changes", "3", "-idle", "200ms", "-out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "control.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rs []controlResult
	if err := json.Unmarshal(b, &rs); err != nil {
		t.Fatal(err)
	}
	want := []string{"file store, 1 replica/3"}
	if _, err := exec.LookPath("etcd"); err == nil {
		want = append(want, "etcd (3 members), 1 replica/3", "etcd (3 members), 3 replicas, written on B, sidecars on A/3")
	}
	want = append(want, "file store, 1 replica/2")
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%s/%d", r.Setup, r.Sidecars))
		if r.P50 <= 0 || r.P99 < r.P50 || r.API50 <= 0 || r.RSS <= 0 || r.Changes != 3 {
			t.Errorf("%s: %+v", r.Setup, r)
		}
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("runs %v, want %v\n%s", got, want, stderr.String())
	}
	if !strings.Contains(stdout.String(), "| file store, 1 replica | 3 |") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
}

// `weft bench transfer` runs its pairs with every party its own process,
// checks each transfer's length, prints both tables, and stops what it
// started.
func TestTransferCommand(t *testing.T) {
	bin := weftForTest(t)
	var stdout, stderr bytes.Buffer
	args := []string{"transfer", "-weft-bin", bin, "-self-bin", os.Args[0], "-mib", "2", "-pairs", "2", "-io-size", "65536"}
	if err := Command(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, dir := range []string{"download", "upload"} {
		if !strings.Contains(out, "\n"+dir+", 2 MiB each") || !strings.Contains(out, "\n"+dir+": weft ÷ direct median") {
			t.Errorf("no %s table:\n%s", dir, out)
		}
		for _, leg := range []string{"direct", "weft"} {
			for pair := 1; pair <= 2; pair++ {
				if want := fmt.Sprintf("%s pair %d %s: ", dir, pair, leg); !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		}
	}
	if err := Command(context.Background(), []string{"transfer", "-dir", "sideways"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), `"sideways" is not download or upload`) {
		t.Fatalf("-dir sideways: %v", err)
	}
}

// -peers puts nginx and HAProxy legs in every pair, each with its own
// table, and refuses a name it does not know.
func TestTransferCommandPeers(t *testing.T) {
	for _, peer := range transferPeers {
		if _, err := lookPeer(peer, "/usr/sbin/"+peer); err != nil {
			t.Skip(err)
		}
	}
	bin := weftForTest(t)
	var stdout, stderr bytes.Buffer
	args := []string{"transfer", "-weft-bin", bin, "-self-bin", os.Args[0], "-mib", "2", "-pairs", "3", "-io-size", "65536", "-peers", "nginx,haproxy"}
	if err := Command(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, dir := range []string{"download", "upload"} {
		for _, peer := range transferPeers {
			if !strings.Contains(out, "\n"+dir+" through "+peer+" (") || !strings.Contains(out, "\n"+dir+": "+peer+" ÷ direct median") {
				t.Errorf("no %s table for %s:\n%s", dir, peer, out)
			}
		}
		for pair := 1; pair <= 3; pair++ {
			for _, leg := range []string{"direct", "weft", "nginx", "haproxy"} {
				if want := fmt.Sprintf("%s pair %d %s: ", dir, pair, leg); !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		}
	}
	// Each pair starts one leg later: the second pair's first leg is weft.
	if i, j := strings.Index(stderr.String(), "download pair 2 weft: "), strings.Index(stderr.String(), "download pair 2 direct: "); i < 0 || j < 0 || i > j {
		t.Errorf("pair 2 did not start with weft:\n%s", stderr.String())
	}
}

func TestParsePeers(t *testing.T) {
	if got, err := parsePeers(" nginx, haproxy ,"); err != nil || strings.Join(got, ",") != "nginx,haproxy" {
		t.Fatalf("parsePeers: %v, %v", got, err)
	}
	for in, want := range map[string]string{"envoy": `-peers: "envoy" is not one of nginx, haproxy`, "nginx,nginx": `-peers: "nginx" named twice`} {
		if _, err := parsePeers(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parsePeers(%q) = %v, want %q", in, err, want)
		}
	}
}

// The transfer client fails a transfer that does not complete: an upload
// larger than an unstreamed upstream accepts (it answers 413 or resets the
// connection, whichever the client sees first).
func TestTransferClientChecksTheAnswer(t *testing.T) {
	s, err := upstream.Start(upstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var stdout, stderr bytes.Buffer
	args := []string{"transfer-client", "-addr", s.Addr(), "-dir", "upload", "-size", strconv.Itoa(5 << 20)}
	err = Command(context.Background(), args, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "transfer-client: upload after") {
		t.Fatalf("oversized upload: err = %v, stdout %q", err, stdout.String())
	}
	stdout.Reset()
	args = []string{"transfer-client", "-addr", s.Addr(), "-dir", "download", "-size", strconv.Itoa(3 << 20)}
	if err := Command(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	var res transferClientResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Bytes != 3<<20 || res.ElapsedNS <= 0 {
		t.Fatalf("download: %+v, %v (%q)", res, err, stdout.String())
	}
}

// The reference proxies run as `bench ref-proxy` subprocesses, answer the
// load, are measured like a peer and compared with nginx of the same run.
func TestRunRefProxies(t *testing.T) {
	var log pidLog
	rep, err := Run(context.Background(), quickOptions(t, &log, Nginx(), RefProxy("epoll"), RefProxy("fasthttp")))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]report.Scenario{}
	for _, s := range rep.Scenarios {
		byName[s.Name] = s
	}
	ng := byName["nginx"]
	nginxRan := ng.OK()
	for _, name := range []string{"ref-epoll", "ref-fasthttp"} {
		s := byName[name]
		if !s.OK() || s.Requests == 0 || s.Failed() != 0 || s.CPU == nil || s.CPU.Seconds <= 0 {
			t.Fatalf("%s: %+v cpu %+v", name, s, s.CPU)
		}
		if s.Compare != "nginx" || (nginxRan && s.CompareCPURatio <= 0) {
			t.Errorf("%s: compare %q, CPU ratio %v (nginx ran: %v)", name, s.Compare, s.CompareCPURatio, nginxRan)
		}
	}
	log.assertGone(t)
}
