package proxy

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/tracing"
)

// buildTracer makes the tracer of a new snapshot (nil when tracing is off),
// keeping prev's exporter, and so its queue, when its settings are
// unchanged. It returns the exporter's key for the next reload.
func (p *Proxy) buildTracer(cfg *config.Config, prev *snapshot) (*tracing.Tracer, string) {
	tc := cfg.Tracing
	if !tc.Enabled {
		return nil, ""
	}
	if p.traceStats == nil {
		p.traceStats = &tracing.Stats{}
		p.metrics.Registry().MustRegister(&traceCollector{st: p.traceStats})
	}
	eo := tracing.ExporterOptions{
		Endpoint: tc.OTLPEndpoint, BatchSize: tc.BatchSize, QueueSize: tc.QueueSize,
		FlushInterval: tc.FlushInterval.D(), Timeout: tc.ExportTimeout.D(),
		ServiceName: tc.ServiceName, Node: cfg.Node.ID, Stats: p.traceStats, Logger: p.log,
	}
	key := eo.Key()
	var exp *tracing.Exporter
	if prev != nil && prev.tracer != nil && prev.traceKey == key {
		exp = prev.tracer.Exporter()
	} else {
		exp = tracing.NewExporter(eo)
	}
	pct := 100.0
	if tc.SamplingPercent != nil {
		pct = *tc.SamplingPercent
	}
	return tracing.New(tracing.Options{SamplingPercent: pct, ForceHeader: tc.ForceHeader, Node: cfg.Node.ID}, exp), key
}

// closeTracer flushes and stops old's exporter unless next keeps it.
func closeTracer(ctx context.Context, old, next *snapshot) error {
	if old == nil || old.tracer == nil {
		return nil
	}
	if next != nil && next.tracer != nil && next.tracer.Exporter() == old.tracer.Exporter() {
		return nil
	}
	return old.tracer.Exporter().Close(ctx)
}

// releaseTracer is release's part for tracing: a replaced exporter gets
// its export timeout plus a second to flush.
func releaseTracer(old, next *snapshot) {
	if old == nil || old.tracer == nil {
		return
	}
	d := old.cfg.Tracing.ExportTimeout.D()
	if d <= 0 {
		d = tracing.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Second)
	defer cancel()
	_ = closeTracer(ctx, old, next)
}

// traceID is the access log's trace_id: the span's, or with tracing off
// the one a traceparent header carries.
func traceID(x *exchange, s *filter.Stream) []byte {
	if x.span != nil {
		return x.span.TraceID()
	}
	return tracing.TraceIDFromHeader(&s.Request.Header)
}

// traceCollector exports the span counters.
type traceCollector struct{ st *tracing.Stats }

var descSpans = prometheus.NewDesc("weft_tracing_spans_total",
	"Spans by fate: exported, failed (the export request failed), dropped (queue full or shutting down), not_sampled.",
	[]string{"result"}, nil)

func (c *traceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descSpans }

func (c *traceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range []struct {
		name string
		v    uint64
	}{
		{"exported", c.st.Exported.Load()}, {"failed", c.st.Failed.Load()},
		{"dropped", c.st.Dropped.Load()}, {"not_sampled", c.st.NotSampled.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(descSpans, prometheus.CounterValue, float64(r.v), r.name)
	}
}
