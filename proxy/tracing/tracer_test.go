package tracing

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
)

func newHeader(kv ...string) *fasthttp.RequestHeader {
	h := &fasthttp.RequestHeader{}
	h.SetMethod("GET")
	h.SetRequestURI("/x")
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestStartContinuesW3C(t *testing.T) {
	tr := New(Options{SamplingPercent: 0}, nil)
	h := newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate", "k=v")
	sp := tr.Start(h, true, time.Now())
	if string(sp.TraceID()) != "4bf92f3577b34da6a3ce929d0e0e4736" || string(sp.ParentSpanID()) != "00f067aa0ba902b7" || !sp.Sampled() {
		t.Fatalf("span: %s %s %v", sp.TraceID(), sp.ParentSpanID(), sp.Sampled())
	}
	out := string(h.Peek("traceparent"))
	if out != "00-4bf92f3577b34da6a3ce929d0e0e4736-"+string(sp.SpanID())+"-01" {
		t.Fatalf("traceparent out: %s (span %s)", out, sp.SpanID())
	}
	if string(h.Peek("tracestate")) != "k=v" {
		t.Fatal("tracestate of a continued trace was not kept")
	}
	if len(h.Peek("b3")) != 0 || len(h.Peek("x-b3-traceid")) != 0 {
		t.Fatal("B3 headers added to a W3C-only request")
	}
}

func TestStartNewTrace(t *testing.T) {
	tr := New(Options{SamplingPercent: 100}, nil)
	h := newHeader("tracestate", "orphan=1", "traceparent", "garbage")
	sp := tr.Start(h, false, time.Now())
	if sp.ParentSpanID() != nil || !sp.Sampled() || len(sp.TraceID()) != 32 {
		t.Fatalf("new trace: %+v", sp.Context())
	}
	if c, ok := ParseTraceparent(h.Peek("traceparent")); !ok || c.TraceID != sp.Context().TraceID || c.SpanID != sp.Context().SpanID {
		t.Fatalf("traceparent out: %s", h.Peek("traceparent"))
	}
	if h.Peek("tracestate") != nil {
		t.Fatal("tracestate of a trace we did not continue was kept")
	}
	// 0%: not sampled unless forced.
	tr0 := New(Options{SamplingPercent: 0}, nil)
	if tr0.Start(newHeader(), false, time.Now()).Sampled() {
		t.Fatal("0% sampled a new trace")
	}
	if !tr0.Start(newHeader("x-weft-trace", "force"), false, time.Now()).Sampled() {
		t.Fatal("force header ignored")
	}
	h = newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "X-Weft-Trace", "FORCE")
	if sp := tr0.Start(h, false, time.Now()); !sp.Sampled() || !strings.HasSuffix(string(h.Peek("traceparent")), "-01") {
		t.Fatalf("forced over a parent's 0: %v %s", sp.Sampled(), h.Peek("traceparent"))
	}
	// Parent-based: a 100% tracer honours sampled=0.
	h = newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	if sp := tr.Start(h, false, time.Now()); sp.Sampled() || !strings.HasSuffix(string(h.Peek("traceparent")), "-00") {
		t.Fatal("the parent's sampled=0 was not honoured")
	}
}

func TestSamplingRatio(t *testing.T) {
	tr := New(Options{SamplingPercent: 25}, nil)
	n, sampled := 20000, 0
	for i := 0; i < n; i++ {
		if tr.Start(newHeader(), false, time.Now()).Sampled() {
			sampled++
		}
	}
	if share := float64(sampled) / float64(n); share < 0.20 || share > 0.30 {
		t.Fatalf("25%% sampling recorded %.3f", share)
	}
}

func TestStartB3(t *testing.T) {
	tr := New(Options{SamplingPercent: 100}, nil)
	h := newHeader("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")
	sp := tr.Start(h, true, time.Now())
	if sp.Sampled() || string(sp.TraceID()) != "000000000000000064fe8b2a57d3eff7" || string(sp.ParentSpanID()) != "e457b5a2e4d86bd1" {
		t.Fatalf("b3 single: %s %s %v", sp.TraceID(), sp.ParentSpanID(), sp.Sampled())
	}
	if got := string(h.Peek("b3")); got != "64fe8b2a57d3eff7-"+string(sp.SpanID())+"-0-e457b5a2e4d86bd1" {
		t.Fatalf("b3 out: %s", got)
	}
	if c, ok := ParseTraceparent(h.Peek("traceparent")); !ok || c.Sampled || c.SpanID != sp.Context().SpanID {
		t.Fatalf("traceparent beside b3: %s", h.Peek("traceparent"))
	}

	h = newHeader("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId", "a2fb4a1d1a96d312", "X-B3-Flags", "1")
	tr0 := New(Options{SamplingPercent: 0}, nil)
	sp = tr0.Start(h, false, time.Now())
	if !sp.Sampled() || string(sp.TraceID()) != "463ac35c9f6413ad48485a3953bb6124" {
		t.Fatalf("b3 multi debug: %s %v", sp.TraceID(), sp.Sampled())
	}
	if string(h.Peek("X-B3-TraceId")) != "463ac35c9f6413ad48485a3953bb6124" || string(h.Peek("X-B3-SpanId")) != string(sp.SpanID()) ||
		string(h.Peek("X-B3-ParentSpanId")) != "a2fb4a1d1a96d312" || string(h.Peek("X-B3-Flags")) != "1" {
		t.Fatalf("b3 multi out: %s", h.String())
	}
	// W3C wins over B3 when both come.
	h = newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")
	if sp := tr.Start(h, false, time.Now()); string(sp.TraceID()) != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatal("b3 won over traceparent")
	}
}

func TestTraceIDFromHeader(t *testing.T) {
	if got := TraceIDFromHeader(newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")); string(got) != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("got %q", got)
	}
	if got := TraceIDFromHeader(newHeader("traceparent", "nope")); got != nil {
		t.Fatalf("got %q", got)
	}
}

// stream is a finished exchange for End.
func stream(h *fasthttp.RequestHeader) (*filter.Stream, *fasthttp.Request, *fasthttp.Response) {
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	h.CopyTo(&req.Header)
	resp.SetStatusCode(200)
	resp.SetBodyString("hello")
	return &filter.Stream{Request: req, Response: resp, Listener: "in", RouteName: "r", ClusterName: "c", UpstreamAddr: "127.0.0.1:1",
		Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}}, req, resp
}

// stalledExporter is an exporter whose queue never has room: every
// sampled span goes through End's whole path and the drop branch, and no
// export goroutine allocates behind the measurement.
func stalledExporter() *Exporter { return &Exporter{q: make(chan *Span), stats: &Stats{}} }

// TestStartEndAllocs: steady state, a traced hop costs no allocation in
// Start/End (spans pooled, headers parsed from and formatted into fixed
// buffers), sampled or not.
func TestStartEndAllocs(t *testing.T) {
	exp := stalledExporter()
	for _, pct := range []float64{0, 100} {
		tr := New(Options{SamplingPercent: pct}, exp)
		h := newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
		s, req, _ := stream(h)
		if pct == 0 {
			req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
		}
		run := func() {
			sp := tr.Start(&req.Header, true, time.Now())
			s.Trace = sp
			sp.End(s, time.Now())
		}
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("sampling %v%%: %.2f allocs per hop, want 0", pct, n)
		}
	}
	if exp.stats.Dropped.Load() == 0 || exp.stats.NotSampled.Load() == 0 {
		t.Fatalf("stats: dropped %d, not sampled %d", exp.stats.Dropped.Load(), exp.stats.NotSampled.Load())
	}
}

func BenchmarkStartEnd(b *testing.B) {
	exp := stalledExporter()
	for _, bc := range []struct {
		name string
		pct  float64
		hdr  []string
	}{
		{"new-unsampled", 0, nil},
		{"w3c-unsampled", 0, []string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}},
		{"b3multi-unsampled", 0, []string{"X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId", "a2fb4a1d1a96d312", "X-B3-Sampled", "0"}},
		{"w3c-sampled", 100, []string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := New(Options{SamplingPercent: bc.pct}, exp)
			s, req, _ := stream(newHeader(bc.hdr...))
			b.ReportAllocs()
			for b.Loop() {
				sp := tr.Start(&req.Header, true, time.Now())
				sp.End(s, time.Now())
			}
		})
	}
}

func BenchmarkParseTraceparent(b *testing.B) {
	v := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseTraceparent(v); !ok {
			b.Fatal("!ok")
		}
	}
}
