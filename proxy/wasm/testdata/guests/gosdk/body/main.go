// Command body is a conformance guest: it buffers and rewrites the request
// body (replace) and the response body (replace, prepend, append).
package main

import (
	"bytes"

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
	if !endOfStream {
		return types.ActionPause // buffer until the whole body is there
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	must(err)
	must(proxywasm.ReplaceHttpRequestBody(append(bytes.ToUpper(body), " (rewritten by wasm)"...)))
	must(proxywasm.AddHttpRequestHeader("x-original-body-size", itoa(bodySize)))
	return types.ActionContinue
}

func (*stream) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpResponseBody(0, bodySize)
	must(err)
	must(proxywasm.ReplaceHttpResponseBody(bytes.ReplaceAll(body, []byte("upstream"), []byte("UPSTREAM"))))
	must(proxywasm.PrependHttpResponseBody([]byte("<<")))
	must(proxywasm.AppendHttpResponseBody([]byte(">>")))
	return types.ActionContinue
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
