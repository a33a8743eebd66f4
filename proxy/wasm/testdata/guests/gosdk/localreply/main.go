// Command localreply is a conformance guest: it answers 403 itself when the
// request has no x-api-key header, and marks every response it sees (the
// upstream's or its own local reply) in on_response_headers.
package main

import (
	"errors"

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

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	_, err := proxywasm.GetHttpRequestHeader("x-api-key")
	if errors.Is(err, types.ErrorStatusNotFound) {
		must(proxywasm.SendHttpResponse(403, [][2]string{
			{"x-denied-by", "localreply-guest"},
			{"content-type", "text/plain"},
		}, []byte("forbidden: missing x-api-key"), -1))
		return types.ActionPause
	}
	must(err)
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	must(proxywasm.AddHttpResponseHeader("x-response-filter-ran", "yes"))
	return types.ActionContinue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
