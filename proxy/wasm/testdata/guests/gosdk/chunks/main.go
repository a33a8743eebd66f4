// Command chunks is a test guest that shows how a request body reaches a
// filter: it passes each chunk on, prefixed with "<SIZE:END_OF_STREAM>",
// so the upstream sees every on_http_request_body call the filter got.
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

func (*stream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	mark := "<" + strconv.Itoa(bodySize) + ":" + strconv.FormatBool(endOfStream) + ">"
	if err := proxywasm.PrependHttpRequestBody([]byte(mark)); err != nil {
		panic(err)
	}
	return types.ActionContinue
}
