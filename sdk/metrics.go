package sdk

import "github.com/weftmesh/weft/sdk/internal/abi"

const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// Counter is a host metric that only goes up. The host exports it with the
// plugin's name as a label.
type Counter struct{ id uint32 }

// NewCounter defines (or finds) the counter name.
func NewCounter(name string) (Counter, error) {
	id, st := abi.DefineMetric(metricCounter, name)
	return Counter{id}, statusErr(st)
}

// Add adds n.
func (c Counter) Add(n uint64) { abi.IncrementMetric(c.id, int64(n)) }

// Inc adds one.
func (c Counter) Inc() { abi.IncrementMetric(c.id, 1) }

// Value reads the counter.
func (c Counter) Value() uint64 { v, _ := abi.GetMetric(c.id); return v }

// Gauge is a host metric that goes up and down.
type Gauge struct{ id uint32 }

// NewGauge defines (or finds) the gauge name.
func NewGauge(name string) (Gauge, error) {
	id, st := abi.DefineMetric(metricGauge, name)
	return Gauge{id}, statusErr(st)
}

// Set sets the gauge.
func (g Gauge) Set(v int64) { abi.RecordMetric(g.id, uint64(v)) }

// Add adds delta (negative to decrease).
func (g Gauge) Add(delta int64) { abi.IncrementMetric(g.id, delta) }

// Value reads the gauge.
func (g Gauge) Value() int64 { v, _ := abi.GetMetric(g.id); return int64(v) }

// Histogram is a host metric recording a distribution (Weft's host buckets
// by powers of two, so record in units where that makes sense: bytes,
// microseconds, milliseconds).
type Histogram struct{ id uint32 }

// NewHistogram defines (or finds) the histogram name.
func NewHistogram(name string) (Histogram, error) {
	id, st := abi.DefineMetric(metricHistogram, name)
	return Histogram{id}, statusErr(st)
}

// Record observes one value.
func (h Histogram) Record(v uint64) { abi.RecordMetric(h.id, v) }
