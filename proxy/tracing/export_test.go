package tracing

import (
	"context"
	"encoding/hex"
	"runtime"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/weftmesh/weft/proxy/internal/otlptest"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestExporterSendsOTLP(t *testing.T) {
	rcv := otlptest.Start(t, false)
	exp := NewExporter(ExporterOptions{Endpoint: rcv.URL, BatchSize: 4, QueueSize: 64, FlushInterval: 20 * time.Millisecond, ServiceName: "orders", Node: "orders-1"})
	tr := New(Options{SamplingPercent: 100, Node: "orders-1"}, exp)
	h := newHeader("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	s, req, _ := stream(h)
	s.ResponseFlags = "URX"
	s.Retries = 2
	s.SetAttribute("trace.attributes.tenant", []byte("acme"))
	s.SetAttribute("other", []byte("not a span attribute"))
	var ids []string
	for i := 0; i < 10; i++ {
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		sp := tr.Start(&req.Header, i%2 == 0, time.Now())
		ids = append(ids, string(sp.SpanID()))
		sp.End(s, time.Now().Add(time.Millisecond))
	}
	waitFor(t, "10 spans", func() bool { return len(rcv.Spans()) == 10 })
	if _, errs := rcv.Posts(); len(errs) > 0 {
		t.Fatalf("receiver errors: %v", errs)
	}
	got := rcv.Spans()
	for i, sp := range got {
		if sp.Service != "orders" || hex.EncodeToString(sp.TraceId) != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			hex.EncodeToString(sp.ParentSpanId) != "00f067aa0ba902b7" || hex.EncodeToString(sp.SpanId) != ids[i] {
			t.Fatalf("span %d: %+v", i, sp)
		}
		wantKind := tracepb.Span_SPAN_KIND_CLIENT
		if i%2 == 0 {
			wantKind = tracepb.Span_SPAN_KIND_SERVER
		}
		if sp.Kind != wantKind || sp.Name != "GET r" || sp.EndTimeUnixNano <= sp.StartTimeUnixNano {
			t.Fatalf("span %d: kind %v name %q", i, sp.Kind, sp.Name)
		}
		for k, want := range map[string]string{AttrStatus: "200", AttrRoute: "r", AttrCluster: "c", AttrUpstream: "127.0.0.1:1",
			AttrRetries: "2", AttrFlags: "URX", AttrRespBytes: "5", AttrNode: "orders-1", "tenant": "acme", "other": ""} {
			if v := sp.Attr(k); v != want {
				t.Errorf("span %d: %s = %q, want %q", i, k, v, want)
			}
		}
	}
	// The receiver has the spans before the exporter counts the batch that
	// carried them (it counts when the POST returns): wait for the counts.
	st := exp.Stats()
	waitFor(t, "the exporter's counts", func() bool { return st.Exported.Load() == 10 })
	if st.Dropped.Load() != 0 || st.Batches.Load() < 3 {
		t.Fatalf("stats: exported %d dropped %d batches %d", st.Exported.Load(), st.Dropped.Load(), st.Batches.Load())
	}
	if err := exp.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestExporterFlushOnClose: spans queued behind a long flush interval are
// sent by Close.
func TestExporterFlushOnClose(t *testing.T) {
	rcv := otlptest.Start(t, false)
	exp := NewExporter(ExporterOptions{Endpoint: rcv.URL, BatchSize: 8, QueueSize: 64, FlushInterval: time.Hour})
	tr := New(Options{SamplingPercent: 100}, exp)
	s, req, _ := stream(newHeader())
	for i := 0; i < 5; i++ {
		tr.Start(&req.Header, false, time.Now()).End(s, time.Now())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := exp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.Spans()); n != 5 {
		t.Fatalf("after Close the collector has %d spans, want 5", n)
	}
	// A span ended after Close is dropped, not queued.
	tr.Start(&req.Header, false, time.Now()).End(s, time.Now())
	if exp.Stats().Dropped.Load() != 1 {
		t.Fatalf("dropped %d after close", exp.Stats().Dropped.Load())
	}
}

// TestExporterDropsWhenCollectorHangs: with a collector that never
// answers, ending spans never blocks; the queue fills, spans are dropped
// and counted, and Close returns at its deadline with no goroutine left.
func TestExporterDropsWhenCollectorHangs(t *testing.T) {
	before := runtime.NumGoroutine()
	rcv := otlptest.Start(t, true)
	exp := NewExporter(ExporterOptions{Endpoint: rcv.URL, BatchSize: 4, QueueSize: 16, FlushInterval: 5 * time.Millisecond, Timeout: time.Minute})
	tr := New(Options{SamplingPercent: 100}, exp)
	s, req, _ := stream(newHeader())
	for i := 0; i < 5000; i++ { // would deadlock on the 21st span if End blocked
		tr.Start(&req.Header, false, time.Now()).End(s, time.Now())
	}
	if d := exp.Stats().Dropped.Load(); d < 5000-16-4-4 {
		t.Fatalf("dropped %d of 5000 with a queue of 16", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := exp.Close(ctx); err == nil {
		t.Fatal("Close with a hung collector reported a complete flush")
	}
	rcv.Close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
