package wasm

import "github.com/tetratelabs/wazero/api"

// metricFuncs: proxy_define_metric, proxy_increment_metric,
// proxy_record_metric, proxy_get_metric → Runtime.Collector.
func metricFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_define_metric", host(proxyDefineMetric), params(4)},
		{"proxy_increment_metric", host(proxyIncrementMetric), []api.ValueType{i32, i64}},
		{"proxy_record_metric", host(proxyRecordMetric), []api.ValueType{i32, i64}},
		{"proxy_get_metric", host(proxyGetMetric), params(2)},
	}
}

// proxy_define_metric(type, name, nlen, ret_id_ptr)
func proxyDefineMetric(v *vm, st []uint64) uint32 {
	typ := uint32(st[0])
	name, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok || !v.writable(uint32(st[3]), 4) {
		return statusInvalidMemoryAccess
	}
	if typ > metricHistogram || len(name) == 0 {
		return statusBadArgument
	}
	id := v.p.rt.metrics.define(v.p.spec.Name, typ, string(name))
	v.writeU32(uint32(st[3]), id)
	return statusOK
}

// proxy_increment_metric(id, i64 delta): counters only go up.
func proxyIncrementMetric(v *vm, st []uint64) uint32 {
	m := v.p.rt.metrics.get(uint32(st[0]))
	if m == nil {
		return statusNotFound
	}
	delta := int64(st[1])
	switch m.typ {
	case metricCounter:
		if delta < 0 {
			return statusBadArgument
		}
		m.val.Add(delta)
	case metricGauge:
		m.val.Add(delta)
	default:
		return statusBadArgument
	}
	return statusOK
}

// proxy_record_metric(id, u64 value): gauges are set, histograms observe.
func proxyRecordMetric(v *vm, st []uint64) uint32 {
	m := v.p.rt.metrics.get(uint32(st[0]))
	if m == nil {
		return statusNotFound
	}
	switch m.typ {
	case metricCounter:
		m.val.Store(int64(st[1]))
	default:
		m.record(st[1])
	}
	return statusOK
}

// proxy_get_metric(id, ret_u64_ptr)
func proxyGetMetric(v *vm, st []uint64) uint32 {
	m := v.p.rt.metrics.get(uint32(st[0]))
	if m == nil {
		return statusNotFound
	}
	if m.typ == metricHistogram {
		return statusBadArgument
	}
	if !v.writeU64(uint32(st[1]), uint64(m.val.Load())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}
