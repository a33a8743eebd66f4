// Command loglevel is a conformance guest for a plugin's log_level: on each
// request it asks the host for its level (proxy_get_log_level, which the
// Go SDK does not wrap), puts it in the request header x-log-level, and
// logs one line at each Proxy-Wasm level, "loglevel line N" for N = 0
// (trace) to 5 (critical), with proxy_log directly, so that the host alone
// decides which lines are written.
package main

import (
	"strconv"
	"unsafe"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(level *uint32) uint32

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg *byte, size int32) uint32

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	var level uint32
	if st := proxyGetLogLevel(&level); st != 0 {
		panic("proxy_get_log_level: status " + strconv.Itoa(int(st)))
	}
	if err := proxywasm.AddHttpRequestHeader("x-log-level", strconv.Itoa(int(level))); err != nil {
		panic(err)
	}
	for l := uint32(0); l <= 5; l++ {
		msg := "loglevel line " + strconv.Itoa(int(l))
		proxyLog(l, unsafe.StringData(msg), int32(len(msg)))
	}
	return types.ActionContinue
}
