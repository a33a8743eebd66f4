package main

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/plugins/internal/e2e"
	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/filtertest"
	"github.com/weftmesh/weft/sdk/sdktest"
)

func TestParseConfig(t *testing.T) {
	for _, raw := range []string{
		`{}`, `{"delay":{"percent":120,"duration":"1s"}}`, `{"delay":{"percent":10,"duration":"0s"}}`,
		`{"delay":{"percent":10,"duration":"1m"}}`, `{"abort":{"percent":10,"status":99}}`,
		`{"abort":{"percent":-1,"status":503}}`, `{"abort":{"percent":1,"status":503},"headers":[{"value":"x"}]}`,
		`{"abort":{"percent":1,"status":503},"bogus":1}`, `{"delay":{"percent":1,"duration":5}}`,
	} {
		if _, err := parseConfig([]byte(raw)); err == nil {
			t.Errorf("parseConfig(%s) accepted it", raw)
		}
	}
	c, err := parseConfig([]byte(`{"delay":{"percent":25,"duration":"200ms"},"abort":{"percent":10,"status":503},"headers":[{"name":"X-Fault"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Headers[0].Name != "x-fault" || c.tickPeriod() != 20*time.Millisecond {
		t.Errorf("config %+v tick %v", c, c.tickPeriod())
	}
	for _, tc := range []struct {
		dd, ad float64
		want   decision
	}{
		{0, 0, decision{200 * time.Millisecond, true}},
		{24.9, 9.9, decision{200 * time.Millisecond, true}},
		{25, 10, decision{}},
		{99, 5, decision{abort: true}},
	} {
		if got := c.decide(tc.dd, tc.ad); got != tc.want {
			t.Errorf("decide(%v, %v) = %+v, want %+v", tc.dd, tc.ad, got, tc.want)
		}
	}
}

func TestDelayResumesOnTick(t *testing.T) {
	now := time.Unix(1000, 0)
	h := sdktest.New(t, sdktest.Options{
		PluginConfig: []byte(`{"delay":{"percent":100,"duration":"1s"},"headers":[{"name":"x-fault","value":"on"}]}`),
		Now:          func() time.Time { return now },
	})
	plain := h.NewStream(sdktest.Req{})
	plain.Run(nil)
	if !plain.Forwarded() {
		t.Fatal("a request without the header was delayed")
	}
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"x-fault", "on"}}})
	s.Run(nil)
	if !s.Paused() || h.TickPeriod() != 100*time.Millisecond {
		t.Fatalf("paused %v tick %v", s.Paused(), h.TickPeriod())
	}
	now = now.Add(500 * time.Millisecond)
	h.Tick()
	if s.Resumes != 0 {
		t.Fatal("resumed before the delay")
	}
	now = now.Add(500 * time.Millisecond)
	h.Tick()
	if s.Resumes != 1 || h.TickPeriod() != 0 {
		t.Fatalf("resumes %d tick %v", s.Resumes, h.TickPeriod())
	}
	s.Continue()
	if !s.Forwarded() || h.Metric("fault_delays_total").Value != 1 || h.Metric("fault_active_delays").Value != 0 {
		t.Errorf("forwarded %v metrics %+v", s.Forwarded(), h.Metrics())
	}
}

func TestDelayThenAbort(t *testing.T) {
	now := time.Unix(1000, 0)
	h := sdktest.New(t, sdktest.Options{
		PluginConfig: []byte(`{"delay":{"percent":100,"duration":"1s"},"abort":{"percent":100,"status":429,"body":"slow down"}}`),
		Now:          func() time.Time { return now },
	})
	s := h.NewStream(sdktest.Req{})
	s.Run(nil)
	now = now.Add(time.Second)
	h.Tick()
	s.Continue()
	if s.Forwarded() || s.Local == nil || s.Local.Status != 429 || string(s.Local.Body) != "slow down" {
		t.Fatalf("forwarded %v local %+v", s.Forwarded(), s.Local)
	}
}

func TestDelayedStreamGoneIsDropped(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: []byte(`{"delay":{"percent":100,"duration":"1s"}}`)})
	s := h.NewStream(sdktest.Req{})
	s.Run(nil)
	s.Finish()
	if h.Metric("fault_active_delays").Value != 0 {
		t.Error("a finished stream stayed in the delay list")
	}
}

// TestFilterStateless: without delays one filter value serves every
// stream (sdk.StatelessFilter); a delay keeps its stream, so with delays
// each stream has a filter (and a context) of its own.
func TestFilterStateless(t *testing.T) {
	for cfg, want := range map[string]bool{
		`{"abort":{"percent":10,"status":503}}`:                                        true,
		`{"delay":{"percent":10,"duration":"1s"}}`:                                     false,
		`{"delay":{"percent":10,"duration":"1s"},"abort":{"percent":10,"status":503}}`: false,
	} {
		sdktest.New(t, sdktest.Options{PluginConfig: []byte(cfg)}) // a host for the constructor's calls
		p, err := newPlugin([]byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		f, ok := p.NewHTTPFilter(nil).(sdk.StatelessFilter)
		if got := ok && f.Stateless(); got != want {
			t.Errorf("%s: stateless %v, want %v", cfg, got, want)
		}
	}
}

func faultWasm(t testing.TB) []byte { return filtertest.BuildGo(t, "./plugins/fault") }

func TestWasmAbortShare(t *testing.T) {
	h := filtertest.New(t, faultWasm(t), filtertest.Config{PluginConfig: []byte(`{"abort":{"percent":30,"status":503}}`)})
	const n = 400
	aborted := 0
	for i := 0; i < n; i++ {
		res := h.Request(filtertest.Req{})
		switch {
		case res.Response.Status == 503 && res.UpstreamRequest == nil:
			aborted++
			if v, _ := res.Response.Header("x-weft-fault"); v != "abort" {
				t.Fatalf("abort without x-weft-fault: %+v", res.Response)
			}
		case res.Response.Status != 200:
			t.Fatalf("status %d", res.Response.Status)
		}
	}
	// 30% of 400 is 120, σ ≈ 9.2: ±45 is a ~5σ margin.
	if aborted < 75 || aborted > 165 {
		t.Errorf("aborted %d of %d at 30%%", aborted, n)
	}
	if m, err := h.Metric("fault_aborts_total"); err != nil || int(m.Value) != aborted {
		t.Errorf("fault_aborts_total %+v, counted %d", m, aborted)
	}
}

// TestWasmAbortOnlyIsStateless: without delays the filter keeps nothing
// per stream (sdk.StatelessFilter), so after the first stream each request
// enters the VM once; aborts at 0% and 100% need no random number and
// still decide every request alike.
func TestWasmAbortOnlyIsStateless(t *testing.T) {
	for _, tc := range []struct {
		cfg     string
		aborted bool
	}{
		{`{"abort":{"percent":0,"status":503}}`, false},
		{`{"abort":{"percent":100,"status":503},"headers":[{"name":"x-chaos"}]}`, true},
	} {
		h := filtertest.New(t, faultWasm(t), filtertest.Config{PluginConfig: []byte(tc.cfg)})
		h.Request(filtertest.Req{}) // the stream that declares the filter stateless
		calls := h.GuestCalls()
		const n = 20
		for i := 0; i < n; i++ {
			res := h.Request(filtertest.Req{Headers: [][2]string{{"x-chaos", "1"}}})
			if got := res.Response.Status == 503 && res.UpstreamRequest == nil; got != tc.aborted {
				t.Fatalf("%s: request %d: status %d, aborted %v", tc.cfg, i, res.Response.Status, got)
			}
		}
		if got := h.GuestCalls() - calls; got != n {
			t.Errorf("%s: %d requests made %v calls into the VM, want one each", tc.cfg, n, got)
		}
		want := 0.0
		if tc.aborted {
			want = n
		}
		if m, err := h.Metric("fault_aborts_total"); err != nil || m.Value != want {
			t.Errorf("%s: fault_aborts_total %+v, %v; want %v", tc.cfg, m, err, want)
		}
	}
}

func TestWasmDelayDoesNotBlockTheVM(t *testing.T) {
	const delay = 1500 * time.Millisecond
	h := filtertest.New(t, faultWasm(t), filtertest.Config{
		PluginConfig: []byte(`{"delay":{"percent":100,"duration":"1500ms"},"headers":[{"name":"x-fault"}]}`),
		PoolSize:     1,
	})
	var finished atomic.Int32
	var wg sync.WaitGroup
	// Whatever the outcome, the delayed requests end before the test does
	// (and before the harness closes under them): a t.Fatal below must not
	// leave them to report into a finished test.
	t.Cleanup(wg.Wait)
	elapsed := make([]time.Duration, 3)
	for i := range elapsed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res := h.Request(filtertest.Req{Headers: [][2]string{{"x-fault", "1"}}})
			elapsed[i] = time.Since(start)
			if res.Response.Status != 200 || res.UpstreamRequest == nil {
				t.Errorf("delayed request: %d", res.Response.Status)
			}
			finished.Add(1)
		}()
	}
	// Wait until the three are parked, then pass a request through the same
	// (single) VM while they wait.
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := h.Metric("fault_active_delays")
		if m.Value == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delays never became active: %+v", m)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res := h.Request(filtertest.Req{}); res.Response.Status != 200 {
		t.Fatalf("undelayed request: %d", res.Response.Status)
	}
	if n := finished.Load(); n != 0 {
		t.Errorf("%d delayed requests finished before an undelayed one passed the same VM", n)
	}
	wg.Wait()
	for i, e := range elapsed {
		if e < delay {
			t.Errorf("request %d took %v, less than the %v delay", i, e, delay)
		}
	}
}

func TestProxyEndToEnd(t *testing.T) {
	app := e2e.StartUpstream(t, "app", nil)
	module := e2e.WriteModule(t, "fault", faultWasm(t))
	_, url := e2e.StartProxy(t, `
listeners:
  - name: in
    address: 127.0.0.1:0
    filters: [fault]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: app}
clusters:
  - name: app
    endpoints: [{address: "{{app}}"}]
filters:
  - name: fault
    module: {path: "{{module}}"}
    pool_size: 1
    config:
      abort: {percent: 100, status: 418, body: "teapot fault"}
      headers: [{name: x-chaos, value: "yes"}]
`, map[string]string{"app": app.Addr, "module": module}, "in")
	var c e2e.Client
	defer c.Close()
	if r := c.Get(t, url+"/x"); r.Status != 200 || r.Body != "app" {
		t.Fatalf("plain request: %d %q", r.Status, r.Body)
	}
	r := c.Get(t, url+"/x", "x-chaos", "yes")
	if r.Status != 418 || r.Body != "teapot fault" || r.Headers["x-weft-fault"] != "abort" {
		t.Fatalf("faulted request: %d %q %v", r.Status, r.Body, r.Headers)
	}
	if n := len(app.Seen()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
}

// BenchmarkWasmNoFault is one request through the fault filter in the real
// host with nothing injected (weft bench's weft-plugin-fault config), plus
// the upstream round trip on loopback.
func BenchmarkWasmNoFault(b *testing.B) {
	h := filtertest.New(b, faultWasm(b), filtertest.Config{PluginConfig: []byte(`{"abort":{"percent":0,"status":503}}`)})
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
