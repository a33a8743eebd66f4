// Command tagged is a conformance guest for tagged metric names. Each
// request counts in tagged_requests_method=METHOD_user=USER (a counter;
// USER from the x-user header), sets tagged_last_size_user=USER (a gauge)
// to the request's content length, and records it in
// tagged_sizes_user=USER (a histogram).
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	user, _ := proxywasm.GetHttpRequestHeader("x-user")
	size, _ := proxywasm.GetHttpRequestHeader("content-length")
	n, _ := strconv.Atoi(size)
	proxywasm.DefineCounterMetric("tagged_requests_method=" + method + "_user=" + user).Increment(1)
	proxywasm.DefineGaugeMetric("tagged_last_size_user=" + user).Add(int64(n))
	proxywasm.DefineHistogramMetric("tagged_sizes_user=" + user).Record(uint64(n))
	return types.ActionContinue
}
