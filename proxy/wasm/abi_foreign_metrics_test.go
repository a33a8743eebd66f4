package wasm

import (
	"encoding/binary"
	"testing"
)

// metricUpdates encodes weft.record_metrics' arguments: (op, id, value).
func metricUpdates(us ...[3]uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(us)))
	for _, u := range us {
		b = append(b, byte(u[0]))
		b = binary.LittleEndian.AppendUint32(b, uint32(u[1]))
		b = binary.LittleEndian.AppendUint64(b, u[2])
	}
	return b
}

// TestForeignRecordMetrics: the updates of one call land as the single
// calls would; a batch with one bad update applies none of them.
func TestForeignRecordMetrics(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	h := newHostEnv(t, p, newStream("/"))
	reg := rt.metrics
	c := reg.define(p.spec.Name, metricCounter, "c")
	g := reg.define(p.spec.Name, metricGauge, "g")
	hist := reg.define(p.spec.Name, metricHistogram, "h")
	minus2 := uint64(1<<64 - 2) // -2, two's complement
	st, res := h.callForeign(foreignRecordMetrics, metricUpdates(
		[3]uint64{metricOpIncrement, uint64(c), 3}, [3]uint64{metricOpIncrement, uint64(g), 5},
		[3]uint64{metricOpIncrement, uint64(g), minus2}, [3]uint64{metricOpRecord, uint64(hist), 100},
		[3]uint64{metricOpRecord, uint64(hist), 3}, [3]uint64{metricOpIncrement, uint64(c), 1}))
	if st != statusOK || len(res) != 0 {
		t.Fatalf("status %d result %v", st, res)
	}
	state := func() [4]uint64 {
		hm := reg.get(hist)
		return [4]uint64{uint64(reg.get(c).val.Load()), uint64(reg.get(g).val.Load()), hm.count.Load(), hm.sum.Load()}
	}
	if got := state(); got != [4]uint64{4, 3, 2, 103} {
		t.Fatalf("counter, gauge, histogram count and sum %v, want [4 3 2 103]", got)
	}
	if b := reg.get(hist).buckets; b[2].Load() != 1 || b[7].Load() != 1 { // 3 ≤ 4, 100 ≤ 128
		t.Errorf("histogram buckets 4 and 128: %d %d", b[2].Load(), b[7].Load())
	}
	before := state()
	ok := [3]uint64{metricOpIncrement, uint64(c), 1}
	for name, tc := range map[string]struct {
		args []byte
		want uint32
	}{
		"empty":                {nil, statusBadArgument},
		"truncated":            {metricUpdates(ok, ok)[:20], statusBadArgument},
		"trailing":             {append(metricUpdates(ok), 0), statusBadArgument},
		"too many":             {binary.LittleEndian.AppendUint32(nil, maxMetricUpdates+1), statusBadArgument},
		"unknown op":           {metricUpdates(ok, [3]uint64{2, uint64(c), 1}), statusBadArgument},
		"counter goes down":    {metricUpdates(ok, [3]uint64{metricOpIncrement, uint64(c), minus2}), statusBadArgument},
		"histogram increment":  {metricUpdates(ok, [3]uint64{metricOpIncrement, uint64(hist), 1}), statusBadArgument},
		"unknown metric":       {metricUpdates(ok, [3]uint64{metricOpRecord, 9999, 1}), statusBadArgument},
		"no metric of id zero": {metricUpdates(ok, [3]uint64{metricOpIncrement, 0, 1}), statusBadArgument},
	} {
		if st, _ := h.callForeign(foreignRecordMetrics, tc.args); st != tc.want {
			t.Errorf("%s: status %d, want %d", name, st, tc.want)
		}
		if got := state(); got != before {
			t.Fatalf("%s: metrics changed: %v, were %v", name, got, before)
		}
	}
	// Recording a counter sets it, as proxy_record_metric does.
	if st, _ := h.callForeign(foreignRecordMetrics, metricUpdates([3]uint64{metricOpRecord, uint64(c), 42})); st != statusOK || reg.get(c).val.Load() != 42 {
		t.Errorf("record of a counter: status %d value %d", st, reg.get(c).val.Load())
	}
}
