package wasm

import "encoding/binary"

// weft.record_metrics applies several metric updates in one call: a filter
// that counts and observes per request (the telemetry plugin: a counter
// and three histograms) pays one entry into the host instead of one per
// update.
//
// Arguments (integers little-endian): u32 count (at most
// maxMetricUpdates), then count × (u8 op: 0 increment, as
// proxy_increment_metric; 1 record, as proxy_record_metric; u32 metric id;
// u64 value: the delta, two's complement, for an increment), and nothing
// after. Every update is checked before any is applied: malformed
// arguments, an unknown metric id or an update the single call would
// refuse (a negative counter delta, an increment of a histogram) answer
// BadArgument and nothing is applied (an unknown id is not NotFound here,
// so NotFound always means a host without the function). Result: OK with
// no data.
const foreignRecordMetrics = "weft.record_metrics"

// maxMetricUpdates bounds the updates of one weft.record_metrics call.
const maxMetricUpdates = 64

// Operations of weft.record_metrics.
const (
	metricOpIncrement = 0
	metricOpRecord    = 1
)

// metricUpdateSize is one update's size in weft.record_metrics' arguments.
const metricUpdateSize = 1 + 4 + 8

// foreignRecordMetricsFunc is weft.record_metrics.
func foreignRecordMetricsFunc(v *vm, args []byte) ([]byte, uint32) {
	if len(args) < 4 {
		return nil, statusBadArgument
	}
	n := binary.LittleEndian.Uint32(args)
	if n > maxMetricUpdates || uint64(len(args)-4) != uint64(n)*metricUpdateSize {
		return nil, statusBadArgument
	}
	reg := v.p.rt.metrics
	// Check all, then apply all: a refused batch changes nothing.
	for pass := 0; pass < 2; pass++ {
		for u := args[4:]; len(u) > 0; u = u[metricUpdateSize:] {
			op, val := u[0], binary.LittleEndian.Uint64(u[5:])
			m := reg.get(binary.LittleEndian.Uint32(u[1:]))
			if pass == 1 {
				applyMetricUpdate(m, op, val)
				continue
			}
			if m == nil || !metricUpdateValid(m, op, val) {
				return nil, statusBadArgument
			}
		}
	}
	return nil, statusOK
}

// metricUpdateValid reports whether proxy_increment_metric (op increment)
// or proxy_record_metric (op record) would accept the update of m.
func metricUpdateValid(m *guestMetric, op byte, val uint64) bool {
	switch op {
	case metricOpIncrement:
		switch m.typ {
		case metricCounter:
			return int64(val) >= 0
		case metricGauge:
			return true
		}
		return false
	case metricOpRecord:
		return true
	}
	return false
}

// applyMetricUpdate applies a checked update as the single call would.
func applyMetricUpdate(m *guestMetric, op byte, val uint64) {
	switch {
	case op == metricOpIncrement:
		m.val.Add(int64(val))
	case m.typ == metricCounter:
		m.val.Store(int64(val))
	default:
		m.record(val)
	}
}
