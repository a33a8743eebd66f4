// Command zlib is a conformance guest for Envoy's compress and uncompress
// foreign functions: a request's x-compress header is compressed, then
// uncompressed; upstream gets x-roundtrip (the result) and x-compressed
// (the compressed bytes, hex). x-uncompress-bad sends garbage to
// uncompress: x-uncompress-error carries the error.
package main

import (
	"encoding/hex"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	if v, err := proxywasm.GetHttpRequestHeader("x-compress"); err == nil {
		c, err := proxywasm.CallForeignFunction("compress", []byte(v))
		must(err)
		back, err := proxywasm.CallForeignFunction("uncompress", c)
		must(err)
		must(proxywasm.AddHttpRequestHeader("x-compressed", hex.EncodeToString(c)))
		must(proxywasm.AddHttpRequestHeader("x-roundtrip", string(back)))
	}
	if _, err := proxywasm.GetHttpRequestHeader("x-uncompress-bad"); err == nil {
		_, err := proxywasm.CallForeignFunction("uncompress", []byte("not zlib"))
		msg := "none"
		if err != nil {
			msg = err.Error()
		}
		must(proxywasm.AddHttpRequestHeader("x-uncompress-error", msg))
	}
	return types.ActionContinue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
