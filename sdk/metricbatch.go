package sdk

import (
	"encoding/binary"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// foreignRecordMetrics is Weft's foreign function applying several metric
// updates in one host call (docs/wasm.md).
const foreignRecordMetrics = "weft.record_metrics"

// maxMetricBatch is the most updates one weft.record_metrics call takes;
// a batch that reaches it is flushed.
const maxMetricBatch = 64

// Operations of weft.record_metrics.
const (
	metricOpIncrement = 0
	metricOpRecord    = 1
)

// noRecordMetricsHost is set once the host answered that it has no
// weft.record_metrics: batches update one metric at a time.
var noRecordMetricsHost bool

// MetricBatch collects metric updates and applies them together at Flush:
// on Weft in one host call (weft.record_metrics, docs/wasm.md), on other
// hosts (Envoy) one call each, as Counter.Add, Gauge.Add and
// Histogram.Record would. A filter that updates several metrics per request
// (a counter and a few histograms) pays one entry into the host instead of
// one per update. Keep one batch and flush it before the callback returns:
// its buffer is reused, so it allocates nothing once grown.
type MetricBatch struct {
	buf []byte // u32 count, then the updates (weft.record_metrics' arguments)
	n   int
}

// Inc adds one to c.
func (b *MetricBatch) Inc(c Counter) { b.add(metricOpIncrement, c.id, 1) }

// Add adds n to c.
func (b *MetricBatch) Add(c Counter, n uint64) { b.add(metricOpIncrement, c.id, n) }

// AddGauge adds delta (negative to decrease) to g.
func (b *MetricBatch) AddGauge(g Gauge, delta int64) { b.add(metricOpIncrement, g.id, uint64(delta)) }

// Record observes v in h.
func (b *MetricBatch) Record(h Histogram, v uint64) { b.add(metricOpRecord, h.id, v) }

// Len is the number of updates waiting for Flush.
func (b *MetricBatch) Len() int { return b.n }

// add appends one update. A metric of id 0 was never defined (its
// New... failed): its single call would fail, and it is left out rather
// than have the host refuse the whole batch for it.
func (b *MetricBatch) add(op byte, id uint32, v uint64) {
	if id == 0 {
		return
	}
	if b.n == 0 {
		b.buf = append(b.buf[:0], 0, 0, 0, 0)
	}
	b.buf = append(b.buf, op)
	b.buf = binary.LittleEndian.AppendUint32(b.buf, id)
	b.buf = binary.LittleEndian.AppendUint64(b.buf, v)
	b.n++
	if b.n == maxMetricBatch {
		_ = b.Flush()
	}
}

// Flush applies the updates collected and empties b. On Weft a batch the
// host refuses (an unknown metric, a counter told to go down) applies none
// of its updates; on other hosts the updates before the refused one stay.
func (b *MetricBatch) Flush() error {
	if b.n == 0 {
		return nil
	}
	n := b.n
	b.n = 0
	binary.LittleEndian.PutUint32(b.buf, uint32(n))
	if !noRecordMetricsHost {
		_, st := abi.CallForeignFunction(foreignRecordMetrics, b.buf)
		switch Status(st) {
		case StatusNotFound, StatusUnimplemented:
			noRecordMetricsHost = true
		default:
			return statusErr(st)
		}
	}
	for u := b.buf[4:]; len(u) > 0; u = u[1+4+8:] {
		id, v := binary.LittleEndian.Uint32(u[1:]), binary.LittleEndian.Uint64(u[5:])
		var st uint32
		if u[0] == metricOpIncrement {
			st = abi.IncrementMetric(id, int64(v))
		} else {
			st = abi.RecordMetric(id, v)
		}
		if st != 0 {
			return Status(st)
		}
	}
	return nil
}
