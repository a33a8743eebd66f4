package proxy

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/otlptest"
)

// headerUpstream is a real fasthttp server that keeps the headers of every
// request it answers.
type headerUpstream struct {
	addr string
	mu   sync.Mutex
	seen []map[string]string
}

func startHeaderUpstream(t *testing.T) *headerUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &headerUpstream{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		m := map[string]string{}
		for k, v := range ctx.Request.Header.All() {
			m[strings.ToLower(string(k))] = string(v)
		}
		u.mu.Lock()
		u.seen = append(u.seen, m)
		u.mu.Unlock()
		ctx.SetBodyString("ok")
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return u
}

func (u *headerUpstream) last() map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[len(u.seen)-1]
}

const sidecarConfig = `
node: {id: {{node}}}
tracing:
  enabled: true
  sampling_percent: {{pct}}
  otlp_endpoint: {{otlp}}
  batch_size: 8
  queue_size: {{queue}}
  flush_interval: 20ms
  export_timeout: {{timeout}}
{{filterdecl}}
listeners:
  - name: {{dir}}
    address: 127.0.0.1:0
    direction: {{dir}}
{{extra}}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: to-{{next}}
            route: {cluster: {{next}}}
clusters:
  - name: {{next}}
    endpoints: [{address: "{{addr}}"}]
`

// sidecar starts one proxy whose only route goes to addr.
func sidecar(t *testing.T, node, dir, next, addr, pct, otlp string, extra map[string]string) (*Proxy, string) {
	vars := map[string]string{"node": node, "dir": dir, "next": next, "addr": addr, "pct": pct, "otlp": otlp,
		"filterdecl": "", "extra": "", "queue": "1024", "timeout": "5s"}
	for k, v := range extra {
		vars[k] = v
	}
	p, url := startProxy(t, sidecarConfig, vars)
	return p, strings.TrimPrefix(url, "http://")
}

// traceMesh is three sidecars in a row: a (outbound) → b (inbound) → c
// (inbound, running the traceprops Wasm filter) → a real upstream.
type traceMesh struct {
	a, b, c  *Proxy
	entry    string
	up       *headerUpstream
	rcv      *otlptest.Receiver
	spanIDs  map[string]string // node → span id, filled by trace
	accessLg string
}

func startTraceMesh(t *testing.T, pctA, pctBC string) *traceMesh {
	wasmPath := filepath.Join(t.TempDir(), "traceprops.wasm")
	if err := os.WriteFile(wasmPath, guestbuild.WAT(t, "testdata/traceprops.wat"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &traceMesh{up: startHeaderUpstream(t), rcv: otlptest.Start(t, false), accessLg: filepath.Join(t.TempDir(), "a.log")}
	var cAddr, bAddr string
	m.c, cAddr = sidecar(t, "c", "inbound", "app", m.up.addr, pctBC, m.rcv.URL, map[string]string{
		"filterdecl": "filters:\n  - name: traceprops\n    module: {path: \"" + wasmPath + "\"}",
		"extra":      "    filters: [traceprops]",
	})
	m.b, bAddr = sidecar(t, "b", "inbound", "c", cAddr, pctBC, m.rcv.URL, nil)
	m.a, m.entry = sidecar(t, "a", "outbound", "b", bAddr, pctA, m.rcv.URL, map[string]string{
		"extra": "    access_log: {enabled: true, path: " + m.accessLg + ", fields: [trace_id, status]}",
	})
	return m
}

func (m *traceMesh) call(t *testing.T, hdrs ...string) map[string]string {
	t.Helper()
	code, body, _ := get(t, &fasthttp.Client{}, "http://"+m.entry+"/orders", hdrs...)
	if code != 200 || body != "ok" {
		t.Fatalf("call: %d %q", code, body)
	}
	return m.up.last()
}

// trace waits for the three spans of traceID and checks the links: a is
// the root (or the caller's child), b a's child, c b's child; and the
// upstream saw c's span as its parent.
func (m *traceMesh) trace(t *testing.T, traceID, callerSpan string, seen map[string]string) map[string]otlptest.Span {
	t.Helper()
	byNode := map[string]otlptest.Span{}
	eventually(t, 10*time.Second, "3 spans of trace "+traceID, func() bool {
		for _, sp := range m.rcv.Spans() {
			if hex.EncodeToString(sp.TraceId) == traceID {
				byNode[sp.Service] = sp
			}
		}
		return len(byNode) == 3
	})
	id := func(n string) string { return hex.EncodeToString(byNode[n].SpanId) }
	parent := func(n string) string { return hex.EncodeToString(byNode[n].ParentSpanId) }
	if parent("a") != callerSpan || parent("b") != id("a") || parent("c") != id("b") {
		t.Fatalf("links: caller %q, a %s←%s, b %s←%s, c %s←%s", callerSpan, id("a"), parent("a"), id("b"), parent("b"), id("c"), parent("c"))
	}
	if want := "00-" + traceID + "-" + id("c") + "-01"; seen["traceparent"] != want {
		t.Fatalf("upstream traceparent %q, want %q", seen["traceparent"], want)
	}
	if byNode["a"].Kind != tracepb.Span_SPAN_KIND_CLIENT || byNode["b"].Kind != tracepb.Span_SPAN_KIND_SERVER || byNode["c"].Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Fatalf("kinds: a %v b %v c %v", byNode["a"].Kind, byNode["b"].Kind, byNode["c"].Kind)
	}
	// The Wasm filter on c saw the trace context and added an attribute.
	if seen["x-seen-trace-id"] != traceID || seen["x-seen-span-id"] != id("c") || byNode["c"].Attr("plugin") != "traceprops" {
		t.Fatalf("wasm view: trace %q span %q attr %q (want %s %s)", seen["x-seen-trace-id"], seen["x-seen-span-id"], byNode["c"].Attr("plugin"), traceID, id("c"))
	}
	for n, next := range map[string]string{"a": "b", "b": "c", "c": "app"} {
		sp := byNode[n]
		if sp.Attr("weft.cluster") != next || sp.Attr("weft.route") != "to-"+next || sp.Attr("http.response.status_code") != "200" ||
			sp.Attr("weft.upstream.address") == "" || sp.Attr("url.path") != "/orders" || sp.Attr("weft.node") != n {
			t.Fatalf("span %s attributes: %v", n, sp.Attributes)
		}
	}
	return byNode
}

func TestTraceThroughThreeSidecars(t *testing.T) {
	m := startTraceMesh(t, "100", "100")
	seen := m.call(t)
	tp := seen["traceparent"]
	if len(tp) != 55 {
		t.Fatalf("upstream traceparent %q", tp)
	}
	traceID := tp[3:35]
	m.trace(t, traceID, "", seen)
	if _, ok := seen["b3"]; ok {
		t.Fatal("b3 sent for a W3C trace")
	}

	// Continue a caller's W3C trace, keeping tracestate.
	seen = m.call(t, "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate", "vendor=x")
	m.trace(t, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", seen)
	if seen["tracestate"] != "vendor=x" {
		t.Fatalf("tracestate: %q", seen["tracestate"])
	}

	// The access log carries the hex trace id.
	eventually(t, 5*time.Second, "access log lines", func() bool {
		f, err := os.Open(m.accessLg)
		if err != nil {
			return false
		}
		defer f.Close()
		var ids []string
		for sc := bufio.NewScanner(f); sc.Scan(); {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				id, _ := line["trace_id"].(string)
				ids = append(ids, id)
			}
		}
		return len(ids) == 2 && ids[0] == traceID && ids[1] == "0af7651916cd43dd8448eb211c80319c"
	})
}

func TestTraceB3Interop(t *testing.T) {
	m := startTraceMesh(t, "0", "0")
	// Multi-header B3, sampled: the sidecars continue it and keep X-B3-* in step.
	seen := m.call(t, "X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId", "a2fb4a1d1a96d312", "X-B3-Sampled", "1")
	spans := m.trace(t, "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", seen)
	if seen["x-b3-traceid"] != "463ac35c9f6413ad48485a3953bb6124" || seen["x-b3-spanid"] != hex.EncodeToString(spans["c"].SpanId) ||
		seen["x-b3-parentspanid"] != hex.EncodeToString(spans["b"].SpanId) || seen["x-b3-sampled"] != "1" {
		t.Fatalf("B3 out: %v", seen)
	}
	// Single b3 header with a 64-bit trace id.
	seen = m.call(t, "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
	spans = m.trace(t, "000000000000000064fe8b2a57d3eff7", "e457b5a2e4d86bd1", seen)
	if want := "64fe8b2a57d3eff7-" + hex.EncodeToString(spans["c"].SpanId) + "-1-" + hex.EncodeToString(spans["b"].SpanId); seen["b3"] != want {
		t.Fatalf("b3 out %q, want %q", seen["b3"], want)
	}
	// B3 debug forces the trace through 0% sidecars.
	seen = m.call(t, "X-B3-TraceId", "1111111111111111", "X-B3-SpanId", "2222222222222222", "X-B3-Flags", "1")
	m.trace(t, "00000000000000001111111111111111", "2222222222222222", seen)
}

func TestTraceSamplingHonouredDownstream(t *testing.T) {
	// a samples nothing new; b and c would sample everything new but must
	// follow the decision they are given.
	m := startTraceMesh(t, "0", "100")
	var unsampled []string
	for i := 0; i < 5; i++ {
		seen := m.call(t)
		if !strings.HasSuffix(seen["traceparent"], "-00") {
			t.Fatalf("a 0%% sidecar sent %q", seen["traceparent"])
		}
		unsampled = append(unsampled, seen["traceparent"][3:35])
	}
	seen := m.call(t, "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
	if seen["traceparent"][3:35] != "0af7651916cd43dd8448eb211c80319c" || !strings.HasSuffix(seen["traceparent"], "-00") {
		t.Fatalf("caller's sampled=0 trace: %q", seen["traceparent"])
	}
	// Forced: every sidecar records it even though the caller said 0.
	seen = m.call(t, "traceparent", "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b7ad6b7169203331-00", "x-weft-trace", "force")
	m.trace(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "b7ad6b7169203331", seen)
	// Each exporter sends in order, so the forced trace's arrival means
	// any span of the earlier requests would have arrived too.
	if n := len(m.rcv.Spans()); n != 3 {
		t.Fatalf("%d spans received, want only the forced trace's 3 (unsampled: %v)", n, unsampled)
	}
	if v := spanCount(t, m.b, "not_sampled"); v < 6 {
		t.Fatalf("b counted %v unsampled hops, want 6", v)
	}
}

// spanCount is weft_tracing_spans_total{result} of p.
func spanCount(t *testing.T, p *Proxy, result string) float64 {
	t.Helper()
	v, ok := metricValue(t, p, "weft_tracing_spans_total", "result", result)
	if !ok {
		t.Fatalf("no weft_tracing_spans_total{result=%q}", result)
	}
	return v
}

// TestTraceExporterNeverBlocksRequests: the collector accepts connections
// and never answers. Requests keep flowing, spans beyond the queue are
// dropped and counted, and shutdown flushes within its deadline and leaves
// no exporter goroutine behind.
func TestTraceExporterNeverBlocksRequests(t *testing.T) {
	up := startHeaderUpstream(t)
	rcv := otlptest.Start(t, true)
	p, addr := sidecar(t, "solo", "inbound", "app", up.addr, "100", rcv.URL, map[string]string{"queue": "16", "timeout": "1m"})
	c := &fasthttp.Client{}
	const n = 500
	for i := 0; i < n; i++ { // a blocked exporter would stall this loop at the 17th request
		if code, _, _ := get(t, c, "http://"+addr+"/x"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if d := spanCount(t, p, "dropped"); d < n-16-2*8 {
		t.Fatalf("dropped %v of %d spans with a queue of 16", d, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "tracing") {
		t.Fatalf("shutdown with a hung collector: %v", err)
	}
	eventually(t, 5*time.Second, "the exporter goroutine to end", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "tracing.(*Exporter).run")
	})
}
