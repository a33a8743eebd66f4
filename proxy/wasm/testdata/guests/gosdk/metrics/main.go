// Command metrics is a conformance guest: its root context defines a counter,
// a gauge and a histogram (plus a counter with an Envoy-style dotted name);
// every stream increments the counters by one, adds x-gauge-delta to the
// gauge and records x-size in the histogram, then sends upstream the
// counter's value as proxy_get_metric reports it (x-counter-value).
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
}

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

type root struct {
	types.DefaultPluginContext
	requests  proxywasm.MetricCounter
	dotted    proxywasm.MetricCounter
	gauge     proxywasm.MetricGauge
	histogram proxywasm.MetricHistogram
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	r.requests = proxywasm.DefineCounterMetric("conformance_requests_total")
	r.dotted = proxywasm.DefineCounterMetric("conformance.dotted.requests")
	r.gauge = proxywasm.DefineGaugeMetric("conformance_level")
	r.histogram = proxywasm.DefineHistogramMetric("conformance_size_bytes")
	return types.OnPluginStartStatusOK
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{root: r} }

type stream struct {
	types.DefaultHttpContext
	root *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.root.requests.Increment(1)
	s.root.dotted.Increment(1)
	if v, err := proxywasm.GetHttpRequestHeader("x-gauge-delta"); err == nil {
		d, err := strconv.ParseInt(v, 10, 64)
		must(err)
		s.root.gauge.Add(d)
	}
	if v, err := proxywasm.GetHttpRequestHeader("x-size"); err == nil {
		n, err := strconv.ParseUint(v, 10, 64)
		must(err)
		s.root.histogram.Record(n)
	}
	must(proxywasm.AddHttpRequestHeader("x-counter-value", strconv.FormatUint(s.root.requests.Value(), 10)))
	return types.ActionContinue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
