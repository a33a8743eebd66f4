package bench

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/report"
	"github.com/weftmesh/weft/proxy/config"
)

// started is a scenario set up by startScenario; stop tears it down and
// checks that nothing it started is left.
type started struct {
	t   *testing.T
	env *Env
	log *pidLog
	url string
}

func startScenario(t *testing.T, sc Scenario) *started {
	t.Helper()
	log := &pidLog{}
	r := testRunner(t, false, log)
	r.opts.WeftBin = weftForTest(t)
	env := &Env{Dir: t.TempDir(), Logger: r.opts.Logger, name: sc.Name, r: r}
	url, err := sc.Setup(context.Background(), env)
	if err != nil {
		env.close()
		t.Fatal(err)
	}
	s := &started{t: t, env: env, log: log, url: url}
	t.Cleanup(s.stop)
	return s
}

func (s *started) stop() {
	if s.env == nil {
		return
	}
	s.log.addGroups(s.t)
	if err := s.env.close(); err != nil {
		s.t.Error(err)
	}
	s.env = nil
	s.log.assertGone(s.t)
	if _, _, err := fasthttp.GetTimeout(nil, s.url, time.Second); err == nil {
		s.t.Errorf("%s still answers after teardown", s.url)
	}
}

// get sends n GETs to url with the scenario's load headers (and extra
// ones) and returns the status codes seen and the last body.
func (s *started) get(url string, n int, extra ...loadgen.Header) (map[int]int, []byte) {
	s.t.Helper()
	codes := map[int]int{}
	var body []byte
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; i < n; i++ {
		req.Reset()
		req.SetRequestURI(url)
		for _, h := range append(append([]loadgen.Header(nil), s.env.headers...), extra...) {
			req.Header.Set(h.Name, h.Value)
		}
		if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
			s.t.Fatalf("GET %s: %v", url, err)
		}
		codes[resp.StatusCode()]++
		body = append(body[:0], resp.Body()...)
	}
	return codes, body
}

// proxyConfig reads back the config a scenario gave `weft proxy` as NAME.
func (s *started) proxyConfig(name string) *config.Config {
	s.t.Helper()
	path := filepath.Join(s.env.Dir, name+".yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg, err := config.Parse(path, data)
	if err != nil {
		s.t.Fatal(err)
	}
	return cfg
}

// metric sums the samples of the Prometheus exposition at the proxy's
// admin whose line starts with prefix.
func (s *started) metric(name, prefix string) float64 {
	s.t.Helper()
	code, body, err := fasthttp.GetTimeout(nil, "http://"+s.proxyConfig(name).Admin.Address+"/stats/prometheus", 5*time.Second)
	if err != nil || code != 200 {
		s.t.Fatalf("metrics: %d %v", code, err)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				s.t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

func (s *started) wantOK(codes map[int]int, body []byte, n int) {
	s.t.Helper()
	if codes[200] != n || len(body) != 128 {
		s.t.Fatalf("statuses %v, last body %d bytes; want %d × 200 with the upstream's 128 bytes", codes, len(body), n)
	}
}

// The auth plugin refuses a request without the token and lets the load
// generator's token through.
func TestPluginAuthScenario(t *testing.T) {
	s := startScenario(t, WeftPluginAuth())
	if len(s.env.headers) != 1 || s.env.headers[0].Name != "Authorization" || !strings.HasPrefix(s.env.headers[0].Value, "Bearer ") {
		t.Fatalf("load headers %v, want a bearer token", s.env.headers)
	}
	codes, body := s.get(s.url, 20)
	s.wantOK(codes, body, 20)
	s.env.headers = nil
	if codes, _ := s.get(s.url, 1); codes[401] != 1 {
		t.Fatalf("without the token: %v, want 401", codes)
	}
	if codes, _ := s.get(s.url, 1, loadgen.Header{Name: "Authorization", Value: "Bearer e30.e30.AAAA"}); codes[401] != 1 {
		t.Fatalf("with a forged token: %v, want 401", codes)
	}
	if n := s.metric("weft", `weft_wasm_guest_counter_total{name="auth_allowed_total"`); n != 20 {
		t.Fatalf("auth_allowed_total = %v, want 20", n)
	}
}

// The RS256 auth scenario lets its token through with the cache off, each
// request's signature checked by the host.
func TestPluginAuthRS256Scenario(t *testing.T) {
	s := startScenario(t, WeftPluginAuthRS256())
	codes, body := s.get(s.url, 5)
	s.wantOK(codes, body, 5)
	s.env.headers = nil
	if codes, _ := s.get(s.url, 1); codes[401] != 1 {
		t.Fatalf("without the token: %v, want 401", codes)
	}
	if n := s.metric("weft", `weft_wasm_guest_counter_total{name="auth_signatures_host_total"`); n != 5 {
		t.Fatalf("auth_signatures_host_total = %v, want 5 (one per request, cache off)", n)
	}
}

// The fault plugin is on the path and injects nothing.
func TestPluginFaultScenario(t *testing.T) {
	s := startScenario(t, WeftPluginFault())
	codes, body := s.get(s.url, 50)
	s.wantOK(codes, body, 50)
	if n := s.metric("weft", `weft_wasm_guest_counter_total{name="fault_aborts_total"`); n != 0 {
		t.Fatalf("fault_aborts_total = %v", n)
	}
	if n := s.metric("weft", `weft_wasm_events_total{event="trap",plugin="fault"}`); n != 0 {
		t.Fatalf("the fault filter trapped %v times", n)
	}
	if f := s.proxyConfig("weft"); len(f.Listeners[0].Filters) != 1 || f.Listeners[0].Filters[0] != "fault" {
		t.Fatalf("listener filters %v", f.Listeners[0].Filters)
	}
}

// The routing plugin splits requests, and the route table sends v2 to its
// own cluster.
func TestPluginRoutingScenario(t *testing.T) {
	s := startScenario(t, WeftPluginRouting())
	const n = 200
	codes, body := s.get(s.url, n)
	s.wantOK(codes, body, n)
	v1 := s.metric("weft", `weft_wasm_guest_counter_total{name="routing_chosen_total{version=v1}"`)
	v2 := s.metric("weft", `weft_wasm_guest_counter_total{name="routing_chosen_total{version=v2}"`)
	toV2 := s.metric("weft", `weft_request_duration_seconds_count{cluster="v2"`)
	toUp := s.metric("weft", `weft_request_duration_seconds_count{cluster="up"`)
	// 90/10 at random: P(no v2 in 200) = 0.9^200, about 7e-10.
	if v1+v2 != n || v2 == 0 || v1 < v2 || toV2 != v2 || toUp != v1 {
		t.Fatalf("chosen v1 %v v2 %v; sent to cluster up %v, v2 %v", v1, v2, toUp, toV2)
	}
}

// The telemetry plugin counts every request.
func TestPluginTelemetryScenario(t *testing.T) {
	s := startScenario(t, WeftPluginTelemetry())
	codes, body := s.get(s.url, 30)
	s.wantOK(codes, body, 30)
	if n := s.metric("weft", `weft_wasm_guest_counter_total{name="bench_requests_total{`); n != 30 {
		t.Fatalf("bench_requests_total = %v, want 30", n)
	}
}

// Four filters written with Weft's SDK are on the path and let every
// request through.
func TestWeftSDKScenario(t *testing.T) {
	s := startScenario(t, WeftWasmWeftSDK(4))
	codes, body := s.get(s.url, 20)
	s.wantOK(codes, body, 20)
	if f := s.proxyConfig("weft"); len(f.Listeners[0].Filters) != 4 || f.Filters[0].Config != "headers" {
		t.Fatalf("listener filters %v, filter config %q", f.Listeners[0].Filters, f.Filters[0].Config)
	}
	if n := s.metric("weft", `weft_wasm_events_total{event="trap"`); n != 0 {
		t.Fatalf("the filters trapped %v times", n)
	}
}

// A no-op filter written with Weft's SDK lets every request through
// unchanged.
func TestWeftSDKNoopScenario(t *testing.T) {
	s := startScenario(t, WeftWasmWeftSDKNoop(1))
	codes, body := s.get(s.url, 20)
	s.wantOK(codes, body, 20)
	if f := s.proxyConfig("weft"); len(f.Listeners[0].Filters) != 1 || f.Filters[0].Config != "noop" {
		t.Fatalf("listener filters %v, filter config %q", f.Listeners[0].Filters, f.Filters[0].Config)
	}
	if n := s.metric("weft", `weft_wasm_events_total{event="trap"`); n != 0 {
		t.Fatalf("the filter trapped %v times", n)
	}
}

// Four no-op filters written with Weft's SDK let every request through
// unchanged, and each of them is entered for every request.
func TestWeftSDKNoop4Scenario(t *testing.T) {
	s := startScenario(t, WeftWasmWeftSDKNoop(4))
	s.wantFilterCalls(4, 20, 0)
	if f := s.proxyConfig("weft"); f.Filters[3].Config != "noop" {
		t.Fatalf("filter config %q", f.Filters[3].Config)
	}
}

// The WAT no-op's filters each get exactly their six callbacks a request
// (context create, request and response headers, log, done, delete: it
// exports no body callback) and let every request through unchanged.
func TestWATNoopScenarios(t *testing.T) {
	startScenario(t, WeftWasmWAT(1)).wantFilterCalls(1, 20, 6)
	startScenario(t, WeftWasmWAT(4)).wantFilterCalls(4, 20, 6)
}

// The C no-op's filters each get the seven callbacks a request the public
// Go SDK's no-op gets (create, request headers, response headers and body,
// log, done, delete) and let every request through unchanged.
func TestCNoopScenarios(t *testing.T) {
	startScenario(t, WeftWasmC(1)).wantFilterCalls(1, 20, 7)
	startScenario(t, WeftWasmC(4)).wantFilterCalls(4, 20, 7)
}

// wantFilterCalls sends n requests through the scenario's n filters and
// checks that every answer is the upstream's, that no filter trapped, and
// that each filter's weft_wasm_plugin_calls_total grew by perRequest
// callbacks a request (by at least one a request when perRequest is 0). A
// stream's calls are counted when it ends, just after its answer is sent,
// so the count is polled until it is reached or a generous deadline passes.
func (s *started) wantFilterCalls(filters, n int, perRequest float64) {
	s.t.Helper()
	cfg := s.proxyConfig("weft")
	if len(cfg.Listeners[0].Filters) != filters {
		s.t.Fatalf("listener filters %v, want %d", cfg.Listeners[0].Filters, filters)
	}
	calls := func(name string) float64 {
		return s.metric("weft", `weft_wasm_plugin_calls_total{plugin="`+name+`"}`)
	}
	before := make([]float64, filters)
	for i, name := range cfg.Listeners[0].Filters {
		before[i] = calls(name)
	}
	codes, body := s.get(s.url, n)
	s.wantOK(codes, body, n)
	for i, name := range cfg.Listeners[0].Filters {
		want := perRequest * float64(n)
		var got float64
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got = calls(name) - before[i]
			if (perRequest == 0 && got >= float64(n)) || (perRequest != 0 && got >= want) || time.Now().After(deadline) {
				break
			}
		}
		switch {
		case perRequest == 0 && got < float64(n):
			s.t.Fatalf("filter %s: %v callbacks for %d requests, want at least one each", name, got, n)
		case perRequest != 0 && got != want:
			s.t.Fatalf("filter %s: %v callbacks for %d requests, want %v (%v each)", name, got, n, want, perRequest)
		}
	}
	if t := s.metric("weft", `weft_wasm_events_total{event="trap"`); t != 0 {
		s.t.Fatalf("the filters trapped %v times", t)
	}
}

// Two sidecars chained: with mTLS, B refuses plaintext and A's config
// pins B's SPIFFE ID; without, B answers plaintext.
func TestTwoHopScenarios(t *testing.T) {
	for _, tt := range []struct {
		sc   Scenario
		mtls bool
	}{{WeftMTLS(), true}, {Weft2HopPlain(), false}} {
		t.Run(tt.sc.Name, func(t *testing.T) {
			s := startScenario(t, tt.sc)
			codes, body := s.get(s.url, 20)
			s.wantOK(codes, body, 20)
			if len(s.log.pids) != 2 {
				t.Fatalf("started %v, want the two sidecars", s.log.pids)
			}
			b := s.proxyConfig("sidecar-b")
			a := s.proxyConfig("sidecar-a")
			direct := "http://" + b.Listeners[0].Address + "/"
			_, _, err := fasthttp.GetTimeout(nil, direct, 2*time.Second)
			if tt.mtls {
				if err == nil {
					t.Fatalf("sidecar B answered plaintext on its strict listener")
				}
				if tls := a.Clusters[0].TLS; tls == nil || tls.Mode != "mtls" || len(tls.ServerIDs) != 1 || tls.ServerIDs[0] != BenchIDB {
					t.Fatalf("sidecar A's cluster tls: %+v", tls)
				}
				if b.Listeners[0].TLS == nil || b.Listeners[0].TLS.Mode != "strict" {
					t.Fatalf("sidecar B's listener tls: %+v", b.Listeners[0].TLS)
				}
			} else if err != nil {
				t.Fatalf("plaintext to sidecar B: %v", err)
			}
			// 20, plus the setup's readiness probe and the plaintext try.
			if n := s.metric("sidecar-b", `weft_request_duration_seconds_count{cluster="up"`); n < 20 || n > 25 {
				t.Fatalf("sidecar B forwarded %v requests, want the 20 sent through A", n)
			}
		})
	}
}

// The generated SVIDs carry the SPIFFE IDs, chain to the CA, and are
// accepted by the proxy's own identity loader (through weft-mtls above).
func TestMeshIdentities(t *testing.T) {
	env := &Env{Dir: t.TempDir(), name: "ids"}
	f, err := writeMeshIdentities(env)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cert, key, id string }{{f.certA, f.keyA, BenchIDA}, {f.certB, f.keyB, BenchIDB}} {
		data, err := os.ReadFile(c.cert)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "BEGIN CERTIFICATE") {
			t.Fatalf("%s: %s", c.cert, data)
		}
		leaf := parseCertFile(t, c.cert)
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != c.id {
			t.Fatalf("%s: URIs %v, want %s", c.cert, leaf.URIs, c.id)
		}
		if err := leaf.CheckSignatureFrom(parseCertFile(t, f.ca)); err != nil {
			t.Fatalf("%s does not chain to the CA: %v", c.cert, err)
		}
	}
}

// The flaky upstream fails a tenth of requests; weft's retries hide them.
func TestFlakyScenarios(t *testing.T) {
	weft := weftForTest(t)
	var log pidLog
	opts := quickOptions(t, &log, DirectFlaky(), WeftRetryFlaky())
	opts.WeftBin = weft
	opts.Load.Duration = 500 * time.Millisecond
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	d, w := rep.Scenarios[0], rep.Scenarios[1]
	if !d.OK() || !w.OK() {
		t.Fatalf("direct-flaky %+v\nweft-retry-flaky %+v", d, w)
	}
	// The upstream fails every tenth request: exactly 10% up to rounding.
	if r := d.ErrorRate(); r < 0.09 || r > 0.11 {
		t.Fatalf("direct-flaky error rate %.4f, want 0.1", r)
	}
	if r := w.ErrorRate(); r > 0.01 {
		t.Fatalf("weft-retry-flaky error rate %.4f, want retries to hide nearly all of the 10%%", r)
	}
	if w.Compare != "direct-flaky" || w.CompareRPSRatio <= 0 {
		t.Fatalf("weft-retry-flaky comparison: %q %v", w.Compare, w.CompareRPSRatio)
	}
	log.assertGone(t)

	// The checks fail what they must: a flaky path without retries is not
	// within the retry scenario's bound, a healthy one not within direct-flaky's.
	flaky := report.Scenario{Name: "x", Requests: 1000, Statuses: loadgen.StatusCounts{C2xx: 900, C5xx: 100}}
	if err := WeftRetryFlaky().Check(&flaky); err == nil {
		t.Error("the retry check passed 10% failures")
	}
	if err := DirectFlaky().Check(&flaky); err != nil {
		t.Error(err)
	}
	healthy := report.Scenario{Name: "x", Requests: 1000, Statuses: loadgen.StatusCounts{C2xx: 1000}}
	if err := DirectFlaky().Check(&healthy); err == nil {
		t.Error("the direct-flaky check passed an upstream that never failed")
	}
	unanswered := report.Scenario{Name: "x", Requests: 1000, Statuses: loadgen.StatusCounts{C2xx: 1000}, Errors: loadgen.ErrorCounts{Reset: 1}}
	if err := WeftRetryFlaky().Check(&unanswered); err == nil {
		t.Error("the retry check passed a request with no response")
	}
}

// The peers start with the harness's configs, proxy, and stop.
func TestPeerScenarios(t *testing.T) {
	for _, sc := range []Scenario{HAProxy(), Caddy()} {
		t.Run(sc.Name, func(t *testing.T) {
			if _, err := lookPeer(sc.Name, "/usr/sbin/"+sc.Name); err != nil {
				t.Skip(err)
			}
			s := startScenario(t, sc)
			codes, body := s.get(s.url, 20)
			s.wantOK(codes, body, 20)
			if len(s.log.pids) != 1 {
				t.Fatalf("started %v", s.log.pids)
			}
		})
	}
}

// `weft bench filter` runs weft and weft + the filter, passes -config to
// the guest, and reports the ratio against weft.
func TestFilterCommand(t *testing.T) {
	weft := weftForTest(t)
	r := testRunner(t, false, nil)
	module, err := r.buildGuest(context.Background(), r.opts.Logger, ".", "./plugins/fault", goGuest("./plugins/fault"))
	if err != nil {
		t.Fatal(err)
	}
	args := func(cfg string) []string {
		return []string{"filter", module, "-quick", "-d", "300ms", "-warmup", "100ms", "-weft-bin", weft, "-out", t.TempDir(), "-config", cfg}
	}
	var stdout, stderr strings.Builder
	if err := Command(context.Background(), args(`{"abort":{"percent":0,"status":503}}`), &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	md := stdout.String()
	for _, want := range []string{"| weft |", "| weft-filter |", "rps × weft", "| weft-filter | weft |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// The config reaches the guest: aborting everything fails the quick run.
	stdout.Reset()
	err = Command(context.Background(), args(`{"abort":{"percent":100,"status":418}}`), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "weft-filter") || !strings.Contains(stdout.String(), "not 2xx") {
		t.Fatalf("err = %v; report:\n%s", err, stdout.String())
	}

	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"filter"}, {"filter", notWasm}, {"filter", module, "extra"}} {
		if err := Command(context.Background(), bad, &stdout, &stderr); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// Quick mode runs the scenarios marked Quick, which are few and include
// the baseline; `list` marks them.
func TestQuickScenarios(t *testing.T) {
	q := QuickScenarios()
	names := map[string]bool{}
	for _, s := range q {
		names[s.Name] = true
	}
	for _, want := range []string{"direct", "weft", "weft-mtls", "weft-2hop-plain", "weft-retry-flaky", "direct-flaky", "weft-plugin-auth"} {
		if !names[want] {
			t.Errorf("quick mode lacks %s", want)
		}
	}
	if len(q) >= len(DefaultScenarios()) {
		t.Errorf("quick mode runs all %d scenarios", len(q))
	}
	all := map[string]bool{}
	for _, s := range DefaultScenarios() {
		if all[s.Name] {
			t.Errorf("two scenarios named %s", s.Name)
		}
		all[s.Name] = true
	}
	for _, s := range DefaultScenarios() {
		if s.Compare != "" && !all[s.Compare] {
			t.Errorf("%s compares with unknown %q", s.Name, s.Compare)
		}
		if s.Quick && s.Compare != "" && !names[s.Compare] {
			t.Errorf("%s runs in quick mode without %s, its comparison", s.Name, s.Compare)
		}
	}
	var out strings.Builder
	if err := Command(context.Background(), []string{"list"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("%-22s q ", "weft-mtls")) {
		t.Errorf("list:\n%s", out.String())
	}
}

// The load generator subprocess gets the scenario's headers.
func TestLoadFlagsCarryHeaders(t *testing.T) {
	flags := loadFlags(loadgen.Config{Headers: []loadgen.Header{{Name: "Authorization", Value: "Bearer x"}}})
	if got := strings.Join(flags, " "); !strings.Contains(got, "-H Authorization: Bearer x") {
		t.Fatalf("flags %q", got)
	}
}

func parseCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
