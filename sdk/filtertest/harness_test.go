package filtertest_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/sdk/filtertest"
)

const kitchensink = "./sdk/filtertest/testdata/kitchensink"

func newKitchen(t *testing.T, cfg filtertest.Config) *filtertest.Harness {
	t.Helper()
	if cfg.PluginConfig == nil {
		cfg.PluginConfig = []byte(`{"greeting":"hi"}`)
	}
	return filtertest.New(t, filtertest.BuildGo(t, kitchensink), cfg)
}

func header(t *testing.T, hs interface{ Header(string) (string, bool) }, name, want string) {
	t.Helper()
	got, ok := hs.Header(name)
	if !ok || got != want {
		t.Errorf("header %s = %q (present %v), want %q", name, got, ok, want)
	}
}

func TestHeadersBothWays(t *testing.T) {
	h := newKitchen(t, filtertest.Config{Upstream: func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(201)
		ctx.SetBodyString("created")
	}})
	res := h.Request(filtertest.Req{Path: "/x", Headers: [][2]string{{"x-remove-me", "1"}, {"x-keep", "k"}}})
	if res.UpstreamRequest == nil {
		t.Fatal("request did not reach the upstream")
	}
	up := res.UpstreamRequest
	header(t, up, "x-filtered", "yes")
	header(t, up, "x-greeting", "hi")
	header(t, up, "x-keep", "k")
	if _, ok := up.Header("x-remove-me"); ok {
		t.Error("x-remove-me reached the upstream")
	}
	if res.LocalReply || res.Response.Status != 201 || string(res.Response.Body) != "created" {
		t.Errorf("response = %d %q local=%v", res.Response.Status, res.Response.Body, res.LocalReply)
	}
	header(t, &res.Response, "x-resp-filter", "1")
	header(t, &res.Response, "x-seen-status", "201")
}

func TestLocalReply(t *testing.T) {
	h := newKitchen(t, filtertest.Config{})
	res := h.Request(filtertest.Req{Path: "/deny"})
	if !res.LocalReply || res.UpstreamRequest != nil {
		t.Fatalf("want a local reply that never reached the upstream, got local=%v upstream=%v", res.LocalReply, res.UpstreamRequest)
	}
	if res.Response.Status != 403 || string(res.Response.Body) != "denied\n" {
		t.Errorf("response = %d %q", res.Response.Status, res.Response.Body)
	}
	header(t, &res.Response, "x-denied", "1")
	// Response filters see local replies too.
	header(t, &res.Response, "x-resp-filter", "1")
}

func TestHTTPCallOut(t *testing.T) {
	h := newKitchen(t, filtertest.Config{Clusters: map[string]fasthttp.RequestHandler{
		"backend": func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(202)
			ctx.SetBodyString("info:" + string(ctx.Request.Header.Peek("x-from")))
		},
	}})
	res := h.Request(filtertest.Req{Path: "/callout"})
	if res.UpstreamRequest == nil {
		t.Fatalf("not forwarded: %d %s", res.Response.Status, res.Response.Body)
	}
	header(t, res.UpstreamRequest, "x-callout-status", "202")
	header(t, res.UpstreamRequest, "x-callout-body", "info:kitchensink")
	seen := h.ClusterRequests("backend")
	if len(seen) != 1 || seen[0].Path != "/info" || seen[0].Host != "backend.test" {
		t.Fatalf("backend saw %+v", seen)
	}
}

func TestHTTPCallOutFailure(t *testing.T) {
	// A cluster address where nothing listens: the guest gets a failed call.
	h := newKitchen(t, filtertest.Config{ClusterAddrs: map[string]string{"backend": "127.0.0.1:1"}})
	res := h.Request(filtertest.Req{Path: "/callout"})
	if res.Response.Status != 502 || res.UpstreamRequest != nil {
		t.Fatalf("response = %d %q, forwarded %v", res.Response.Status, res.Response.Body, res.UpstreamRequest != nil)
	}
	// The SDK hands the guest the host's reason (:dispatch_status).
	if got := string(res.Response.Body); got != "call-out failed: connect_failure\n" {
		t.Errorf("body %q, want the reason connect_failure", got)
	}
}

func TestTickResumesPausedStreams(t *testing.T) {
	h := newKitchen(t, filtertest.Config{})
	var wg sync.WaitGroup
	results := make([]*filtertest.Result, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.Request(filtertest.Req{Path: "/tick"})
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.UpstreamRequest == nil {
			t.Fatalf("request %d not forwarded: %d %s", i, res.Response.Status, res.Response.Body)
		}
		header(t, res.UpstreamRequest, "x-ticked", "yes")
	}
}

func TestBodies(t *testing.T) {
	h := newKitchen(t, filtertest.Config{Upstream: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBody(ctx.PostBody())
	}})
	res := h.Request(filtertest.Req{Method: "POST", Path: "/upper", Body: "hello"})
	if string(res.UpstreamRequest.Body) != "HELLO" {
		t.Errorf("upstream body %q", res.UpstreamRequest.Body)
	}
	if string(res.Response.Body) != "HELLO!" {
		t.Errorf("client body %q", res.Response.Body)
	}
	m, err := h.Metric("request_body_bytes")
	if err != nil || m.Kind != "histogram" || m.Count != 1 || m.Sum != 5 {
		t.Errorf("histogram = %+v, %v", m, err)
	}
}

func TestMetricsAndLogs(t *testing.T) {
	h := newKitchen(t, filtertest.Config{})
	for i := 0; i < 4; i++ {
		h.Request(filtertest.Req{Path: "/m"})
	}
	m, err := h.Metric("requests")
	if err != nil || m.Kind != "counter" || m.Value != 4 {
		t.Errorf("requests = %+v, %v", m, err)
	}
	g, err := h.Metric("inflight")
	if err != nil || g.Kind != "gauge" || g.Value != 0 {
		t.Errorf("inflight = %+v, %v", g, err)
	}
	if _, err := h.Metric("nope"); err == nil {
		t.Error("Metric of an undefined name did not fail")
	}
	if !h.LogContains(`kitchensink configured, greeting="hi"`) || !h.LogContains("request /m") {
		t.Errorf("logs: %+v", h.Logs())
	}
	if !h.LogContains("log /m 200") {
		t.Errorf("OnLog did not see response.code: %+v", h.Logs())
	}
}

func TestSharedDataAcrossVMs(t *testing.T) {
	h := newKitchen(t, filtertest.Config{PoolSize: 2})
	var last string
	for i := 0; i < 5; i++ {
		res := h.Request(filtertest.Req{Path: "/shared"})
		last, _ = res.UpstreamRequest.Header("x-hits")
	}
	if last != "5" {
		t.Errorf("x-hits after 5 requests over 2 VMs = %q, want 5", last)
	}
}

func TestQueue(t *testing.T) {
	h := newKitchen(t, filtertest.Config{})
	h.Request(filtertest.Req{Path: "/enqueue"})
	deadline := time.Now().Add(10 * time.Second)
	for !h.LogContains("queue item: hello queue") {
		if time.Now().After(deadline) {
			t.Fatalf("queue item never delivered; logs %+v", h.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPropertiesAndAllHeaders(t *testing.T) {
	h := newKitchen(t, filtertest.Config{Name: "props-plugin"})
	res := h.Request(filtertest.Req{Path: "/props?q=1"})
	up := res.UpstreamRequest
	header(t, up, "x-plugin-name", "props-plugin")
	header(t, up, "x-prop-path", "/props?q=1")
	header(t, up, "x-prop-mark", "set-by-filter")
	if v, _ := up.Header("x-all-count"); v == "" || v == "0" {
		t.Errorf("x-all-count = %q", v)
	}
}

func TestPanicBecomes500AndVMSurvives(t *testing.T) {
	h := newKitchen(t, filtertest.Config{})
	res := h.Request(filtertest.Req{Path: "/panic"})
	if res.Response.Status != 500 || res.UpstreamRequest != nil {
		t.Fatalf("panic: %d %q", res.Response.Status, res.Response.Body)
	}
	if !h.LogContains("OnRequestHeaders panicked: boom") {
		t.Errorf("logs: %+v", h.Logs())
	}
	if res := h.Request(filtertest.Req{Path: "/ok"}); res.Response.Status != 200 {
		t.Errorf("after the panic: %d", res.Response.Status)
	}
	if ev := h.HostEvents(); ev["trap"] != 0 || ev["vm_replaced"] != 0 {
		t.Errorf("host events after a recovered panic: %v", ev)
	}
}

func TestRefusedConfig(t *testing.T) {
	wasm := filtertest.BuildGo(t, kitchensink)
	_, err := filtertest.Start(t.Context(), wasm, filtertest.Config{PluginConfig: []byte(`{"refuse":true}`)})
	if err == nil || !strings.Contains(err.Error(), "proxy_on_configure returned false") {
		t.Fatalf("Start with a refused config: %v", err)
	}
}
