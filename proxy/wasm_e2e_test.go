package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// guestLanguages are the languages of the conformance guests that have a
// twin in C (proxy/wasm/testdata/guests/c, over sdk/c/proxy_wasm.h) and in
// Weft's own Go SDK (proxy/wasm/testdata/weftsdk) beside the public Go SDK
// one: the tests of network filters run each with the same assertions.
// httpGuestLanguages are those of the tests of Wasm services, metadata and
// tagged metrics: the same three.
var (
	guestLanguages     = []string{"go", "c", "weft"}
	httpGuestLanguages = guestLanguages
)

// guestFileIn builds guest name in lang ("go": gosdk/NAME, "c": c/NAME.c,
// "weft": weftsdk/NAME) and writes it to dir/name.wasm, returning the path
// a config names.
func guestFileIn(t testing.TB, dir, lang, name string) string {
	t.Helper()
	var mod []byte
	switch lang {
	case "go":
		return guestFile(t, dir, name)
	case "c":
		mod = guestbuild.C(t, name)
	case "weft":
		mod = guestbuild.WeftSDK(t, name)
	default:
		t.Fatalf("no guest language %q", lang)
	}
	path := filepath.Join(dir, name+".wasm")
	if err := os.WriteFile(path, mod, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// guestFile builds the Go SDK guest name (proxy/wasm/testdata/guests/gosdk)
// and writes it to dir/name.wasm, returning the path a config names.
func guestFile(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name+".wasm")
	if err := os.WriteFile(path, guestbuild.GoSDK(t, name), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// metricValue is the value of the counter or gauge name whose labels
// include every pair in labels (name, value, name, value...); found is false
// when there is none.
func metricValue(t testing.TB, p *Proxy, name string, labels ...string) (v float64, found bool) {
	t.Helper()
	mfs, err := p.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				have := false
				for _, l := range m.GetLabel() {
					have = have || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !have {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

const wasmChainConfig = `
filters:
  - name: tag-listener
    module: {path: "{{setheader}}"}
    config: "x-tag=listener"
    pool_size: 2
  - name: tag-route
    module: {path: "{{setheader}}"}
    config: "x-tag=route"
    pool_size: 1
  - name: mark-route
    module: {path: "{{setheader}}"}
    config: "x-route-filter=ran"
    pool_size: 1
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [tag-listener]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: api
            match: {prefix: /api}
            route: {cluster: up}
            filters: [tag-route, mark-route]
          - name: rest
            match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// A listener filter runs on every request before routing, a route filter
// only on its route and after the listener's: on /api the route filter's
// value of x-tag reaches the upstream; response filters run in reverse, so
// the client sees the listener filter's value last written.
func TestWasmListenerAndRouteFilters(t *testing.T) {
	up := testserver.Start(t, "up")
	dir := t.TempDir()
	p, url := startProxy(t, wasmChainConfig, map[string]string{"up": up.Addr, "setheader": guestFile(t, dir, "setheader")})
	cl := &fasthttp.Client{}

	st, body, h := get(t, cl, url+"/api/items")
	if st != 200 || body != "up" {
		t.Fatalf("/api: %d %q", st, body)
	}
	last := up.Last()
	if got := string(last.Header.Peek("X-Tag")); got != "route" {
		t.Errorf("/api: upstream saw x-tag %q, want the route filter's value (it runs after the listener's)", got)
	}
	if got := string(last.Header.Peek("X-Route-Filter")); got != "ran" {
		t.Errorf("/api: upstream saw x-route-filter %q, want ran", got)
	}
	if got := string(h.Peek("X-Tag")); got != "listener" {
		t.Errorf("/api: client saw x-tag %q, want listener (response filters run last first)", got)
	}
	if got := string(h.Peek("X-Route-Filter")); got != "ran" {
		t.Errorf("/api: client saw x-route-filter %q, want ran", got)
	}

	st, _, h = get(t, cl, url+"/other")
	if st != 200 {
		t.Fatalf("/other: %d", st)
	}
	last = up.Last()
	if got := string(last.Header.Peek("X-Tag")); got != "listener" {
		t.Errorf("/other: upstream saw x-tag %q, want listener", got)
	}
	if last.Header.Peek("X-Route-Filter") != nil || h.Peek("X-Route-Filter") != nil {
		t.Error("/other: the /api route's filter ran on another route")
	}
	if n, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", "tag-listener", "event", "trap"); n != 0 {
		t.Errorf("%v traps counted for a healthy filter", n)
	}
}

const wasmRouterConfig = `
filters:
  - name: router
    module: {path: "{{router}}"}
    config: "alice, bob"
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [router]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: canary
            match: {prefix: /, headers: [{name: x-route, exact: canary}]}
            route: {cluster: canary}
          - name: stable
            match: {prefix: /}
            route: {cluster: stable}
clusters:
  - name: canary
    endpoints: [{address: "{{canary}}"}]
  - name: stable
    endpoints: [{address: "{{stable}}"}]
`

// Route matching sees the headers as the listener's filters left them: a
// filter's decision steers the request to another cluster, and a header the
// client forged is overwritten before the table looks at it.
func TestWasmListenerFilterSteersRouting(t *testing.T) {
	canary, stable := testserver.Start(t, "canary"), testserver.Start(t, "stable")
	dir := t.TempDir()
	_, url := startProxy(t, wasmRouterConfig, map[string]string{
		"canary": canary.Addr, "stable": stable.Addr, "router": guestFile(t, dir, "router"),
	})
	cl := &fasthttp.Client{}
	cases := []struct {
		hdrs []string
		want string
	}{
		{[]string{"X-User", "alice"}, "canary"},
		{[]string{"X-User", "bob"}, "canary"},
		{[]string{"X-User", "carol"}, "stable"},
		{nil, "stable"},
		{[]string{"X-User", "carol", "X-Route", "canary"}, "stable"}, // forged by the client
	}
	for _, c := range cases {
		st, body, h := get(t, cl, url+"/", c.hdrs...)
		if st != 200 || body != c.want {
			t.Errorf("%v: %d %q, want the %s cluster", c.hdrs, st, body, c.want)
			continue
		}
		if got := string(h.Peek("X-Route")); got != c.want {
			t.Errorf("%v: response x-route %q, want %q", c.hdrs, got, c.want)
		}
	}
	if canary.Hits.Load() != 2 || stable.Hits.Load() != 3 {
		t.Errorf("hits canary=%d stable=%d, want 2 and 3", canary.Hits.Load(), stable.Hits.Load())
	}
}

const wasmLocalReplyConfig = `
filters:
  - name: authz
    module: {path: "{{localreply}}"}
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [authz]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// A filter's local reply answers the client; the upstream is never asked
// and the response callbacks still run on the local reply.
func TestWasmLocalReplyThroughProxy(t *testing.T) {
	up := testserver.Start(t, "up")
	dir := t.TempDir()
	_, url := startProxy(t, wasmLocalReplyConfig, map[string]string{"up": up.Addr, "localreply": guestFile(t, dir, "localreply")})
	cl := &fasthttp.Client{}
	for i := 0; i < 3; i++ {
		st, body, h := get(t, cl, url+"/secret")
		if st != 403 || body != "forbidden: missing x-api-key" {
			t.Fatalf("without a key: %d %q", st, body)
		}
		if string(h.Peek("X-Denied-By")) != "localreply-guest" || string(h.Peek("X-Response-Filter-Ran")) != "yes" {
			t.Fatalf("local reply headers: %s", h.String())
		}
	}
	if n := up.Hits.Load(); n != 0 {
		t.Fatalf("the upstream got %d requests a filter answered", n)
	}
	st, body, h := get(t, cl, url+"/secret", "X-Api-Key", "k")
	if st != 200 || body != "up" || string(h.Peek("X-Response-Filter-Ran")) != "yes" {
		t.Fatalf("with a key: %d %q %s", st, body, h.String())
	}
	if n := up.Hits.Load(); n != 1 {
		t.Fatalf("upstream hits %d, want 1", n)
	}
}

const wasmFailureConfig = `
filters:
  - name: strict
    module: {path: "{{failure}}"}
    failure_policy: fail_closed
    pool_size: 1
  - name: lenient
    module: {path: "{{failure}}"}
    failure_policy: fail_open
    pool_size: 1
    # Not strict's VM, which strict's trap breaks: each plugin's events
    # are counted on its own VM here.
    isolate_vm: true
  - name: counted
    module: {path: "{{metrics}}"}
    pool_size: 1
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [counted]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: closed
            match: {prefix: /closed}
            route: {cluster: up}
            filters: [strict]
          - name: open
            match: {prefix: /open}
            route: {cluster: up}
            filters: [lenient]
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// A trapping filter under fail_closed answers 503 without asking the
// upstream; under fail_open the request goes on without the filter. The
// VM is replaced and later requests are filtered again. Host events and
// guest metrics show at the proxy's registry.
func TestWasmFailurePoliciesThroughProxyAndMetrics(t *testing.T) {
	up := testserver.Start(t, "up")
	dir := t.TempDir()
	p, url := startProxy(t, wasmFailureConfig, map[string]string{
		"up": up.Addr, "failure": guestFile(t, dir, "failure"), "metrics": guestFile(t, dir, "metrics"),
	})
	cl := &fasthttp.Client{}
	requests := 0
	send := func(path string, hdrs ...string) (int, string) {
		requests++
		st, body, _ := get(t, cl, url+path, hdrs...)
		return st, body
	}

	// Healthy first: both filters run.
	for _, path := range []string{"/closed", "/open"} {
		if st, body := send(path); st != 200 || body != "up" {
			t.Fatalf("%s: %d %q", path, st, body)
		}
		if got := string(up.Last().Header.Peek("X-Filtered")); got != "yes" {
			t.Fatalf("%s: the filter did not run (x-filtered %q)", path, got)
		}
	}

	hits := up.Hits.Load()
	if st, _ := send("/closed", "X-Panic", "1"); st != 503 {
		t.Fatalf("fail_closed trap: status %d, want 503", st)
	}
	if up.Hits.Load() != hits {
		t.Fatal("fail_closed: the upstream got the request of a failed filter")
	}
	if st, body := send("/open", "X-Panic", "1"); st != 200 || body != "up" {
		t.Fatalf("fail_open trap: %d %q, want the upstream's answer", st, body)
	}
	last := up.Last()
	if last.Header.Peek("X-Panic") == nil || last.Header.Peek("X-Filtered") != nil {
		t.Fatalf("fail_open: the upstream should get the request without the filter's changes: %s", last.Header.String())
	}

	// The broken VMs are replaced in the background; the filters run again.
	for _, path := range []string{"/closed", "/open"} {
		eventually(t, 10*time.Second, path+" filtered again", func() bool {
			st, _ := send(path)
			return st == 200 && string(up.Last().Header.Peek("X-Filtered")) == "yes"
		})
	}

	want := []struct {
		plugin, event string
	}{
		{"strict", "trap"}, {"strict", "fail_closed"}, {"strict", "vm_replaced"},
		{"lenient", "trap"}, {"lenient", "fail_open"}, {"lenient", "vm_replaced"},
	}
	for _, w := range want {
		if n, ok := metricValue(t, p, "weft_wasm_events_total", "plugin", w.plugin, "event", w.event); !ok || n < 1 {
			t.Errorf("weft_wasm_events_total{plugin=%q,event=%q} = %v (found %t), want ≥ 1", w.plugin, w.event, n, ok)
		}
	}
	if n, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", "strict", "event", "fail_open"); n != 0 {
		t.Errorf("a fail_closed filter counted %v fail_open decisions", n)
	}
	// The listener's metrics filter saw every request.
	n, ok := metricValue(t, p, "weft_wasm_guest_counter_total", "plugin", "counted", "name", "conformance_requests_total")
	if !ok || int(n) != requests {
		t.Errorf("guest counter = %v (found %t), want %d requests", n, ok, requests)
	}
	// A guest metric name with dots is exported as is, as a label.
	if !strings.Contains(gatherText(t, p), `weft_wasm_guest_counter_total{name="conformance.dotted.requests",plugin="counted"}`) {
		t.Error("the dotted guest counter is not exported")
	}
}

// gatherText is the registry in the text exposition format, names and
// labels only (for presence checks).
func gatherText(t testing.TB, p *Proxy) string {
	t.Helper()
	mfs, err := p.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			b.WriteByte('{')
			for i, l := range m.GetLabel() {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
			}
			b.WriteString("}\n")
		}
	}
	return b.String()
}

// wasmRunawayConfig has the failure guest under both policies with every
// bound at its default (the callback deadline included), and a route with
// no filter.
const wasmRunawayConfig = `
filters:
  - name: strict
    module: {path: "{{failure}}"}
    failure_policy: fail_closed
  - name: lenient
    module: {path: "{{failure}}"}
    failure_policy: fail_open
    # Its own VMs: strict's runaway replaces the VMs it runs in, and each
    # plugin's stop and replacement are counted here on its own.
    isolate_vm: true
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: closed
            match: {prefix: /closed}
            route: {cluster: up}
            filters: [strict]
          - name: open
            match: {prefix: /open}
            route: {cluster: up}
            filters: [lenient]
          - name: free
            match: {prefix: /free}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// runawayWait is how long a request that meets a spinning filter may take.
// The deadline is 50 ms of the guest's CPU: a loaded machine (CI under
// -race, a niced run beside busy loops) gives the spinning thread a few
// percent of a core, so the stop comes seconds later by the clock, past
// get's 10 s (2 of 8 runs at load 25-30, GOMAXPROCS=4, -race, nice 19, the
// stops charged 50 ms over 0.8-1.5 s of the watchdog's ticks).
const runawayWait = 90 * time.Second

// getWithin is get with the client's timeout given.
func getWithin(c *fasthttp.Client, timeout time.Duration, url string, hdrs ...string) (int, string) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Set(hdrs[i], hdrs[i+1])
	}
	if err := c.DoTimeout(req, resp, timeout); err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode(), string(resp.Body())
}

// A Go filter spinning for ever in on_request_headers, with the default
// callback deadline: the client gets the policy's answer (fail_closed: 503
// and the upstream is not asked; fail_open: the upstream's answer without
// the filter), the stop is counted, the VM is replaced and filters again,
// and requests on other routes and plugins keep being answered meanwhile.
func TestWasmRunawayFilterStoppedByDefaultDeadline(t *testing.T) {
	up := testserver.Start(t, "up")
	p, url := startProxy(t, wasmRunawayConfig, map[string]string{"up": up.Addr, "failure": guestFile(t, t.TempDir(), "failure")})
	cl := &fasthttp.Client{}

	// Other streams, on a route without the filter and on the other
	// plugin, all the while.
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt) // whatever the outcome: no request logs after the test
	var others, otherFailures atomic.Int64
	for _, path := range []string{"/free", "/open"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.Client{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				// /open waits behind the spinning VM while the pool grows.
				if st, body := getWithin(c, runawayWait, url+path); st != 200 || body != "up" {
					otherFailures.Add(1)
					t.Errorf("%s while a filter spins: %d %q", path, st, body)
				}
				others.Add(1)
			}
		}()
	}

	if st, _ := getWithin(cl, runawayWait, url+"/closed/loop", "X-Loop", "1"); st != 503 {
		t.Fatalf("fail_closed runaway: status %d, want 503", st)
	}
	if st, body := getWithin(cl, runawayWait, url+"/open/loop", "X-Loop", "1"); st != 200 || body != "up" {
		t.Fatalf("fail_open runaway: %d %q, want the upstream's answer", st, body)
	}
	halt()
	if others.Load() == 0 || otherFailures.Load() != 0 {
		t.Errorf("other streams while the filters spun: %d answered, %d failed", others.Load(), otherFailures.Load())
	}
	openLoop := false
	for _, path := range up.Paths() {
		if path == "/closed/loop" {
			t.Error("fail_closed: the upstream got the request of a stopped filter")
		}
		openLoop = openLoop || path == "/open/loop"
	}
	if !openLoop {
		t.Error("fail_open: the request of a stopped filter did not reach the upstream")
	}

	// The stopped VMs are replaced; the filters run again.
	for _, path := range []string{"/closed", "/open"} {
		eventually(t, 10*time.Second, path+" filtered again", func() bool {
			st, _, _ := get(t, cl, url+path)
			return st == 200 && string(up.Last().Header.Peek("X-Filtered")) == "yes"
		})
	}

	for _, w := range []struct {
		plugin, event string
		min           float64
	}{
		{"strict", "callback_timeout", 1}, {"strict", "fail_closed", 1}, {"strict", "vm_replaced", 1},
		{"lenient", "callback_timeout", 1}, {"lenient", "fail_open", 1}, {"lenient", "vm_replaced", 1},
	} {
		// vm_replaced is counted when the replacement VM is built, in the
		// background: "filtered again" above may be another VM of the
		// pool (it grows while the runaway holds one), so poll.
		what := "weft_wasm_events_total{plugin=" + w.plugin + ",event=" + w.event + "} to reach its minimum"
		eventually(t, 60*time.Second, what, func() bool {
			n, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", w.plugin, "event", w.event)
			return n >= w.min
		})
	}
	if n, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", "strict", "event", "trap"); n != 0 {
		t.Errorf("a stopped runaway was counted as %v traps, want callback_timeout only", n)
	}
}
