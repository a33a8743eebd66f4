// Command bigheaders is a hostile test guest: on every request it adds
// 2,000 request headers of 60 KB each (120 MB in all), ignoring the
// host's refusals, then lets the request go on.
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

type stream struct {
	types.DefaultHttpContext
}

var value string

func init() {
	b := make([]byte, 60_000)
	for i := range b {
		b[i] = 'v'
	}
	value = string(b)
}

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	for i := 0; i < 2000; i++ {
		_ = proxywasm.AddHttpRequestHeader("x-big-"+strconv.Itoa(i), value) // refusals ignored
	}
	return types.ActionContinue
}
