package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/plugins/internal/e2e"
	"github.com/weftmesh/weft/sdk/filtertest"
)

type fakeReq map[string]string

func (r fakeReq) header(name string) (string, bool) { v, ok := r[name]; return v, ok }

const canary = `{"rules":[{"header":{"name":"X-Canary","value":"always"},"version":"v2"},
	{"cookie":{"name":"ab","value":"b"},"version":"v3"},{"header":{"name":"x-beta"},"version":"beta"}],
	"split":{"sticky_header":"x-user-id","versions":[{"version":"v1","weight":90},{"version":"v2","weight":10}]}}`

func TestChoose(t *testing.T) {
	c, err := parseConfig([]byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  fakeReq
		draw uint64
		want string
	}{
		{fakeReq{"x-canary": "always"}, 0, "v2"},
		{fakeReq{"x-canary": "never"}, 0, "v1"},
		{fakeReq{"cookie": "a=1; ab=b; z=2"}, 0, "v3"},
		{fakeReq{"cookie": "ab=a"}, 95, "v2"},
		{fakeReq{"x-beta": ""}, 0, "beta"},
		{fakeReq{}, 89, "v1"},
		{fakeReq{}, 90, "v2"},
		{fakeReq{}, 199, "v2"},
	} {
		if got, ok := c.choose(tc.req, tc.draw); !ok || got != tc.want {
			t.Errorf("choose(%v, %d) = %q, %v; want %q", tc.req, tc.draw, got, ok, tc.want)
		}
	}
}

func TestStickySplit(t *testing.T) {
	c, err := parseConfig([]byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	v2 := 0
	const users = 5000
	for i := 0; i < users; i++ {
		u := fakeReq{"x-user-id": fmt.Sprintf("user-%d", i)}
		first, _ := c.choose(u, uint64(i))
		for draw := uint64(0); draw < 5; draw++ {
			if again, _ := c.choose(u, draw*7919); again != first {
				t.Fatalf("user %d moved from %s to %s", i, first, again)
			}
		}
		if first == "v2" {
			v2++
		}
	}
	// 10% of 5000 = 500, σ ≈ 21: ±120 is over 5σ.
	if v2 < 380 || v2 > 620 {
		t.Errorf("%d of %d users on v2 at 10%%", v2, users)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, raw := range []string{
		`{}`, `{"rules":[{"version":"v1"}]}`, `{"rules":[{"header":{"name":"a"},"cookie":{"name":"b"},"version":"v1"}]}`,
		`{"rules":[{"header":{"name":"a"},"version":"bad version"}]}`, `{"split":{"versions":[]}}`,
		`{"split":{"versions":[{"version":"v1","weight":0}]}}`, `{"split":{"sticky_header":"a","sticky_cookie":"b","versions":[{"version":"v1","weight":1}]}}`,
		`{"default":"v1","extra":true}`,
	} {
		if _, err := parseConfig([]byte(raw)); err == nil {
			t.Errorf("parseConfig(%s) accepted it", raw)
		}
	}
}

func FuzzCookieValue(f *testing.F) {
	f.Add("a=1; b=2", "b")
	f.Add(`x="q"`, "x")
	f.Add(";;=;", "")
	f.Fuzz(func(t *testing.T, header, name string) {
		v, ok := cookieValue(header, name)
		if ok && !strings.Contains(header, name+"=") {
			t.Fatalf("found %q=%q in %q", name, v, header)
		}
	})
}

func routingWasm(t testing.TB) []byte { return filtertest.BuildGo(t, "./plugins/routing") }

func TestWasmRouting(t *testing.T) {
	h := filtertest.New(t, routingWasm(t), filtertest.Config{PluginConfig: []byte(canary)})
	version := func(hdrs ...[2]string) string {
		res := h.Request(filtertest.Req{Headers: hdrs})
		v, _ := res.UpstreamRequest.Header("x-weft-version")
		return v
	}
	if v := version([2]string{"x-canary", "always"}); v != "v2" {
		t.Errorf("header rule: %q", v)
	}
	if v := version([2]string{"cookie", "ab=b"}); v != "v3" {
		t.Errorf("cookie rule: %q", v)
	}
	if v := version([2]string{"x-weft-version", "v9"}, [2]string{"x-user-id", "u1"}); v == "v9" {
		t.Error("a client-chosen version was trusted")
	}
	first := version([2]string{"x-user-id", "alice"})
	for i := 0; i < 10; i++ {
		if v := version([2]string{"x-user-id", "alice"}); v != first {
			t.Fatalf("sticky user moved from %s to %s", first, v)
		}
	}
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		counts[version()]++
	}
	// 10% of 400 = 40, σ = 6: [10, 80] is a ~5σ margin.
	if counts["v2"] < 10 || counts["v2"] > 80 || counts["v1"]+counts["v2"] != 400 {
		t.Errorf("random split: %v", counts)
	}
	m, err := h.Metric("routing_chosen_total{version=v2}")
	if err != nil || m.Value < float64(counts["v2"]) {
		t.Errorf("v2 counter %+v, %v", m, err)
	}
}

// countingDrawer counts the random numbers asked of it.
type countingDrawer struct{ n int }

func (d *countingDrawer) Uint64() uint64 { d.n++; return 7 }

// TestDrawOnlyForRandomSplit: a request a rule or a sticky key decides
// draws no random number; one the split decides at random draws one.
func TestDrawOnlyForRandomSplit(t *testing.T) {
	c, err := parseConfig([]byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req   fakeReq
		draws int
		want  string
	}{
		{fakeReq{"x-canary": "always"}, 0, "v2"},
		{fakeReq{"cookie": "ab=b"}, 0, "v3"},
		{fakeReq{"x-user-id": "alice"}, 0, ""},
		{fakeReq{}, 1, "v1"}, // 7 % 100 < 90
	} {
		var d countingDrawer
		i := c.chooseIndex(tc.req, &d)
		if i < 0 || d.n != tc.draws || (tc.want != "" && c.choices[i] != tc.want) {
			t.Errorf("%v: choice %d (%v), %d draws; want %q, %d draws", tc.req, i, c.choices, d.n, tc.want, tc.draws)
		}
	}
}

// TestWasmStateless: the filter keeps nothing per stream, so after the
// first stream each request enters the VM once, and each choice is
// counted under its version.
func TestWasmStateless(t *testing.T) {
	h := filtertest.New(t, routingWasm(t), filtertest.Config{PluginConfig: []byte(
		`{"rules":[{"header":{"name":"x-beta"},"version":"beta"}],"split":{"versions":[{"version":"v1","weight":1},{"version":"v2","weight":1}]}}`)})
	version := func(hdrs ...[2]string) string {
		res := h.Request(filtertest.Req{Headers: hdrs})
		v, _ := res.UpstreamRequest.Header("x-weft-version")
		return v
	}
	first := version() // the stream that declares the filter stateless
	calls := h.GuestCalls()
	counts := map[string]int{}
	const n = 40
	for i := 0; i < n; i++ {
		hdrs := [][2]string{{"x-weft-version", "v9"}}
		if i%4 == 0 {
			hdrs = append(hdrs, [2]string{"x-beta", "1"})
		}
		counts[version(hdrs...)]++
	}
	if got := h.GuestCalls() - calls; got != n {
		t.Errorf("%d requests made %v calls into the VM, want one each", n, got)
	}
	if counts["beta"] != n/4 || counts["v1"]+counts["v2"] != n-n/4 || counts["v9"] != 0 {
		t.Errorf("versions %v", counts)
	}
	counts[first]++
	for _, v := range []string{"beta", "v1", "v2"} {
		m, err := h.Metric("routing_chosen_total{version=" + v + "}")
		if counts[v] > 0 && (err != nil || m.Value != float64(counts[v])) {
			t.Errorf("routing_chosen_total{version=%s} %+v, %v; chose it %d times", v, m, err, counts[v])
		}
	}
}

func TestProxyEndToEnd(t *testing.T) {
	v1 := e2e.StartUpstream(t, "v1", nil)
	v2 := e2e.StartUpstream(t, "v2", nil)
	module := e2e.WriteModule(t, "routing", routingWasm(t))
	_, url := e2e.StartProxy(t, `
listeners:
  - name: in
    address: 127.0.0.1:0
    filters: [versions]
    virtual_hosts:
      - name: reviews
        domains: ["*"]
        routes:
          - match:
              prefix: /
              headers: [{name: x-weft-version, exact: v2}]
            route: {cluster: reviews-v2}
          - match: {prefix: /}
            route: {cluster: reviews-v1}
clusters:
  - name: reviews-v1
    endpoints: [{address: "{{v1}}"}]
  - name: reviews-v2
    endpoints: [{address: "{{v2}}"}]
filters:
  - name: versions
    module: {path: "{{module}}"}
    pool_size: 1
    config:
      rules: [{cookie: {name: tester, value: "1"}, version: v2}]
      split:
        sticky_header: x-user-id
        versions: [{version: v1, weight: 50}, {version: v2, weight: 50}]
`, map[string]string{"v1": v1.Addr, "v2": v2.Addr, "module": module}, "in")
	var c e2e.Client
	defer c.Close()
	if r := c.Get(t, url+"/reviews", "Cookie", "tester=1"); r.Body != "v2" {
		t.Errorf("tester cookie went to %q", r.Body)
	}
	bodies := map[string]int{}
	for i := 0; i < 40; i++ {
		user := fmt.Sprintf("user-%d", i%8)
		r1 := c.Get(t, url+"/reviews", "x-user-id", user)
		r2 := c.Get(t, url+"/reviews", "x-user-id", user)
		if r1.Status != 200 || r1.Body != r2.Body {
			t.Fatalf("user %s: %d %q then %q", user, r1.Status, r1.Body, r2.Body)
		}
		bodies[r1.Body]++
	}
	if bodies["v1"] == 0 || bodies["v2"] == 0 {
		t.Errorf("8 sticky users at 50/50 all went one way: %v", bodies)
	}
	if got := v2.Last().Headers["x-weft-version"]; got != "v2" {
		t.Errorf("v2 saw x-weft-version %q", got)
	}
}

// BenchmarkWasmSplit is one request through the routing filter with the
// canary config (rules, then a split sticky on x-user-id).
func BenchmarkWasmSplit(b *testing.B) {
	benchRouting(b, canary, "x-user-id", "alice")
}

// BenchmarkWasmRandomSplit is weft bench's weft-plugin-routing config: a
// 90/10 split drawn at random for every request, no rule, no sticky key.
func BenchmarkWasmRandomSplit(b *testing.B) {
	benchRouting(b, `{"split":{"versions":[{"version":"v1","weight":90},{"version":"v2","weight":10}]}}`, "", "")
}

// benchRouting sends requests (with header name: value when name is set)
// through the filter configured cfg, in the real host, plus the upstream
// round trip on loopback.
func benchRouting(b *testing.B, cfg, name, value string) {
	h := filtertest.New(b, routingWasm(b), filtertest.Config{PluginConfig: []byte(cfg)})
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
		req.Header.SetHost("reviews.test")
		if name != "" {
			req.Header.Set(name, value)
		}
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
