package sdk_test

import (
	"slices"
	"testing"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// batchPlugin counts each stream with a MetricBatch.
type batchPlugin struct {
	batch   sdk.MetricBatch
	c       sdk.Counter
	g       sdk.Gauge
	h       sdk.Histogram
	flushed []error
}

func (p *batchPlugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return batchFilter{p} }

type batchFilter struct{ p *batchPlugin }

func (f batchFilter) OnLog(*sdk.Stream) {
	p := f.p
	p.batch.Inc(p.c)
	p.batch.Add(p.c, 2)
	p.batch.AddGauge(p.g, 5)
	p.batch.AddGauge(p.g, -4)
	p.batch.Record(p.h, 7)
	p.batch.Record(p.h, 9)
	if p.batch.Len() != 6 {
		sdk.Errorf("batch of %d updates, want 6", p.batch.Len())
	}
	p.flushed = append(p.flushed, p.batch.Flush())
}

// TestMetricBatchFallback: on a host without weft.record_metrics (the
// emulated host, like Envoy) a batch applies its updates one call each, in
// order, and asks the host for the function once. (Weft's batch is tested
// through the real host in proxy/wasm, TestForeignRecordMetrics, and with
// the telemetry plugin.)
func TestMetricBatchFallback(t *testing.T) {
	var p *batchPlugin
	sdk.Register(func([]byte) (sdk.Plugin, error) {
		p = &batchPlugin{}
		var err error
		if p.c, err = sdk.NewCounter("c"); err != nil {
			return nil, err
		}
		if p.g, err = sdk.NewGauge("g"); err != nil {
			return nil, err
		}
		p.h, err = sdk.NewHistogram("h")
		return p, err
	})
	h := sdktest.New(t, sdktest.Options{})
	for range 3 {
		h.NewStream(sdktest.Req{}).Run(nil)
	}
	if c, g, hist := h.Metric("c"), h.Metric("g"), h.Metric("h"); c == nil || c.Value != 9 || g == nil || g.Value != 3 ||
		hist == nil || !slices.Equal(hist.Samples, []uint64{7, 9, 7, 9, 7, 9}) {
		t.Errorf("counter %+v gauge %+v histogram %+v", c, g, hist)
	}
	if len(p.flushed) != 3 || p.flushed[0] != nil || p.flushed[2] != nil {
		t.Errorf("flushes: %v", p.flushed)
	}
	if n := h.ForeignCalls("weft.record_metrics"); n != 1 {
		t.Errorf("weft.record_metrics asked %d times, want once", n)
	}
	if h.LogContains("batch of") {
		t.Errorf("logs: %v", h.Logs())
	}
	// A batch of no update is not sent.
	if err := (&sdk.MetricBatch{}).Flush(); err != nil {
		t.Errorf("empty flush: %v", err)
	}
}
