// Command noop is a Proxy-Wasm filter that does nothing: every callback
// continues. It measures what a filter costs by itself (the host's calls
// into the guest and back) in benchmarks and in `weft bench`.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &types.DefaultHttpContext{} })
}
