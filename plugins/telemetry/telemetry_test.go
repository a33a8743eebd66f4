package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/plugins/internal/e2e"
	"github.com/weftmesh/weft/sdk/filtertest"
	"github.com/weftmesh/weft/sdk/sdktest"
)

func TestConfig(t *testing.T) {
	for _, raw := range []string{`{"sample_rate":2}`, `{"max_routes":-1}`, `{"log_headers":[""]}`, `{"nope":1}`} {
		if _, err := parseConfig([]byte(raw)); err == nil {
			t.Errorf("parseConfig(%s) accepted it", raw)
		}
	}
	c, err := parseConfig(nil)
	if err != nil || c.Prefix != "http" || c.MaxRoutes != 100 {
		t.Fatalf("defaults %+v, %v", c, err)
	}
	if c.statusLabel(503) != "503" {
		t.Error(c.statusLabel(503))
	}
	c.StatusClasses = true
	if c.statusLabel(503) != "5xx" || c.statusLabel(42) != "unknown" {
		t.Error(c.statusLabel(503), c.statusLabel(42))
	}
	line := logLine("GET", "/a b", 200, 1500, "r1", [][2]string{{"user-agent", "curl"}})
	if line != `request GET "/a b" status=200 duration_us=1500 route=r1 user-agent="curl"` {
		t.Errorf("log line %q", line)
	}
}

func TestRouteCardinalityCap(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: []byte(`{"max_routes":2}`)})
	for i := 0; i < 4; i++ {
		s := h.NewStream(sdktest.Req{})
		s.Run(nil)
	}
	// sdktest has no route_name: every request counts as "unknown".
	if m := h.Metric("http_requests_total{route=unknown,code=200}"); m == nil || m.Value != 4 {
		t.Fatalf("counter %+v (all: %v)", m, h.Metrics())
	}
	// Routes beyond the cap fold into "other".
	p := h.Plugin().(*plugin)
	p.cfg.MaxRoutes = 2
	for _, r := range []string{"a", "b", "c", "d"} {
		p.counter(p.routeOf([]byte(r)), 200).Inc()
	}
	// "unknown" and "a" fill the cap; b, c, d are "other".
	if m := h.Metric("http_requests_total{route=other,code=200}"); m == nil || m.Value != 3 {
		t.Errorf("other: %+v", m)
	}
	if m := h.Metric("http_requests_total{route=d,code=200}"); m != nil {
		t.Errorf("route d got its own series past the cap")
	}
}

func telemetryWasm(t testing.TB) []byte { return filtertest.BuildGo(t, "./plugins/telemetry") }

func TestWasmMetricsAndSampling(t *testing.T) {
	h := filtertest.New(t, telemetryWasm(t), filtertest.Config{
		PluginConfig: []byte(`{"sample_rate":1,"log_headers":["user-agent","x-request-id"]}`),
		Upstream: func(ctx *fasthttp.RequestCtx) {
			code, _ := strconv.Atoi(strings.TrimPrefix(string(ctx.Path()), "/"))
			ctx.SetStatusCode(code)
			ctx.SetBodyString(strings.Repeat("x", 100))
		},
	})
	for _, path := range []string{"/200", "/200", "/404", "/503"} {
		h.Request(filtertest.Req{Method: "POST", Path: path, Body: "0123456789", Headers: [][2]string{{"user-agent", "weft-test"}}})
	}
	for name, want := range map[string]float64{
		"http_requests_total{route=filtertest,code=200}": 2,
		"http_requests_total{route=filtertest,code=404}": 1,
		"http_requests_total{route=filtertest,code=503}": 1,
		"http_sampled_logs_total":                        4,
	} {
		if m, err := h.Metric(name); err != nil || m.Value != want {
			t.Errorf("%s = %+v, %v; want %v", name, m, err, want)
		}
	}
	req, _ := h.Metric("http_request_bytes")
	resp, _ := h.Metric("http_response_bytes")
	lat, _ := h.Metric("http_request_duration_us")
	if req.Count != 4 || req.Sum != 40 || resp.Count != 4 || resp.Sum != 400 || lat.Count != 4 {
		t.Errorf("histograms: request %+v response %+v latency %+v", req, resp, lat)
	}
	if !h.LogContains(`request POST "/404" status=404`) || !h.LogContains(`user-agent="weft-test"`) {
		t.Errorf("logs: %+v", h.Logs())
	}
}

func TestWasmErrorsOnlyLogging(t *testing.T) {
	h := filtertest.New(t, telemetryWasm(t), filtertest.Config{
		PluginConfig: []byte(`{"log_errors":true,"status_classes":true}`),
		Upstream: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/fail" {
				ctx.SetStatusCode(502)
			}
		},
	})
	h.Request(filtertest.Req{Path: "/ok"})
	h.Request(filtertest.Req{Path: "/fail"})
	if h.LogContains(`"/ok"`) || !h.LogContains(`request GET "/fail" status=502`) {
		t.Errorf("logs: %+v", h.Logs())
	}
	if m, err := h.Metric("http_requests_total{route=filtertest,code=5xx}"); err != nil || m.Value != 1 {
		t.Errorf("5xx counter %+v, %v", m, err)
	}
}

// TestWasmStatelessMetrics: without request logs the filter is stateless
// (sdk.StatelessFilter), so each request after the first enters the VM
// once (on_log), and every status and size is still counted.
func TestWasmStatelessMetrics(t *testing.T) {
	for _, cfg := range []string{`{}`, `{"status_classes":true,"sample_rate":0}`} {
		h := filtertest.New(t, telemetryWasm(t), filtertest.Config{
			PluginConfig: []byte(cfg),
			Upstream: func(ctx *fasthttp.RequestCtx) {
				code, _ := strconv.Atoi(strings.TrimPrefix(string(ctx.Path()), "/"))
				ctx.SetStatusCode(code)
				ctx.SetBodyString(strings.Repeat("x", 10))
			},
		})
		h.Request(filtertest.Req{Path: "/200"}) // the stream that declares the filter stateless
		calls := h.GuestCalls()
		paths := []string{"/200", "/404", "/404", "/200", "/503", "/200"}
		for _, path := range paths {
			h.Request(filtertest.Req{Method: "POST", Path: path, Body: "abc"})
		}
		if got := h.GuestCalls() - calls; got != float64(len(paths)) {
			t.Errorf("%s: %d requests made %v calls into the VM, want one each", cfg, len(paths), got)
		}
		want := map[string]float64{"http_requests_total{route=filtertest,code=200}": 4,
			"http_requests_total{route=filtertest,code=404}": 2, "http_requests_total{route=filtertest,code=503}": 1}
		if strings.Contains(cfg, "status_classes") {
			want = map[string]float64{"http_requests_total{route=filtertest,code=2xx}": 4,
				"http_requests_total{route=filtertest,code=4xx}": 2, "http_requests_total{route=filtertest,code=5xx}": 1}
		}
		for name, n := range want {
			if m, err := h.Metric(name); err != nil || m.Value != n {
				t.Errorf("%s: %s = %+v, %v; want %v", cfg, name, m, err, n)
			}
		}
		req, _ := h.Metric("http_request_bytes")
		resp, _ := h.Metric("http_response_bytes")
		lat, _ := h.Metric("http_request_duration_us")
		if req.Count != 7 || req.Sum != 18 || resp.Count != 7 || resp.Sum != 70 || lat.Count != 7 {
			t.Errorf("%s: histograms: request %+v response %+v latency %+v", cfg, req, resp, lat)
		}
	}
}

func TestProxyEndToEnd(t *testing.T) {
	app := e2e.StartUpstream(t, "app", nil)
	module := e2e.WriteModule(t, "telemetry", telemetryWasm(t))
	p, url := e2e.StartProxy(t, `
listeners:
  - name: in
    address: 127.0.0.1:0
    filters: [telemetry]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: api
            match: {prefix: /api}
            route: {cluster: app}
          - name: teapot
            match: {prefix: /tea}
            direct_response: {status: 418, body: "short and stout"}
clusters:
  - name: app
    endpoints: [{address: "{{app}}"}]
filters:
  - name: telemetry
    module: {path: "{{module}}"}
    pool_size: 1
    config: {prefix: edge}
`, map[string]string{"app": app.Addr, "module": module}, "in")
	var c e2e.Client
	defer c.Close()
	for i := 0; i < 3; i++ {
		if r := c.Get(t, url+"/api/x"); r.Status != 200 {
			t.Fatalf("api: %d", r.Status)
		}
	}
	c.Get(t, url+"/tea")
	// Back to a route seen before another one (the last route is cached).
	if r := c.Get(t, url+"/api/y"); r.Status != 200 {
		t.Fatalf("api: %d", r.Status)
	}
	fams, err := p.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "weft_wasm_guest_counter_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got["edge_requests_total{route=api,code=200}"] != 4 {
		t.Errorf("proxy metrics: %v", got)
	}
	if got["edge_requests_total{route=teapot,code=418}"] != 1 {
		t.Errorf("direct response not counted by route: %v", got)
	}
}

// BenchmarkWasmTelemetry is one request through the telemetry filter with
// its default config (counters by status code), in the real host, plus the
// upstream round trip on loopback.
func BenchmarkWasmTelemetry(b *testing.B) { benchTelemetry(b, `{}`) }

// BenchmarkWasmTelemetryClasses is weft bench's weft-plugin-telemetry
// config: status classes, no request logs.
func BenchmarkWasmTelemetryClasses(b *testing.B) {
	benchTelemetry(b, `{"prefix":"bench","status_classes":true,"sample_rate":0}`)
}

func benchTelemetry(b *testing.B, cfg string) {
	h := filtertest.New(b, telemetryWasm(b), filtertest.Config{PluginConfig: []byte(cfg)})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := e2e.ProcessCPU()
	for i := 0; i < b.N; i++ {
		req.Reset()
		resp.Reset()
		req.SetRequestURI("/")
		req.Header.SetHost("svc.test")
		if h.Serve(req, resp) || resp.StatusCode() != 200 {
			b.Fatalf("status %d", resp.StatusCode())
		}
	}
	// CPU per request (host, guest, harness and upstream), less sensitive
	// than ns/op to other work on the machine.
	if cpu := e2e.ProcessCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
