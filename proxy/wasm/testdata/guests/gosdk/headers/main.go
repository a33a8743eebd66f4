// Command headers is a conformance guest: it edits request and response
// headers (add, remove, replace, the :path pseudo-header, repeated values)
// and echoes what it read from pseudo-headers so the test can check the
// host's header maps. With x-replace-all it instead rewrites the whole
// request map at once (get/set header map pairs); with x-log it logs the
// path at warn level.
package main

import (
	"strings"

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
	if has("x-log") {
		path, err := proxywasm.GetHttpRequestHeader(":path")
		must(err)
		proxywasm.LogWarnf("headers guest saw %s", path)
	}
	if has("x-replace-all") {
		replaceAll()
		return types.ActionContinue
	}
	must(proxywasm.AddHttpRequestHeader("x-weft-added", "request-side"))
	must(proxywasm.AddHttpRequestHeader("x-multi", "a"))
	must(proxywasm.AddHttpRequestHeader("x-multi", "b"))
	must(proxywasm.RemoveHttpRequestHeader("x-remove-me"))
	method, err := proxywasm.GetHttpRequestHeader(":method")
	must(err)
	authority, err := proxywasm.GetHttpRequestHeader(":authority")
	must(err)
	path, err := proxywasm.GetHttpRequestHeader(":path")
	must(err)
	must(proxywasm.AddHttpRequestHeader("x-seen-method", method))
	must(proxywasm.AddHttpRequestHeader("x-seen-authority", authority))
	must(proxywasm.AddHttpRequestHeader("x-seen-path", path))
	// Replacing a header that exists overwrites it; one that is missing is added.
	must(proxywasm.ReplaceHttpRequestHeader("x-replace-me", "replaced"))
	must(proxywasm.ReplaceHttpRequestHeader(":path", "/rewritten"+path))
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	status, err := proxywasm.GetHttpResponseHeader(":status")
	must(err)
	must(proxywasm.AddHttpResponseHeader("x-weft-response", "response-side"))
	must(proxywasm.AddHttpResponseHeader("x-seen-status", status))
	must(proxywasm.RemoveHttpResponseHeader("x-upstream-secret"))
	must(proxywasm.ReplaceHttpResponseHeader("x-upstream-version", "v2"))
	must(proxywasm.AddHttpResponseHeader("x-multi", "1"))
	must(proxywasm.AddHttpResponseHeader("x-multi", "2"))
	return types.ActionContinue
}

// replaceAll reads every request header (pseudo-headers included), drops
// x-drop-*, prefixes :path with /pairs, adds one header and writes the map
// back in one call.
func replaceAll() {
	hs, err := proxywasm.GetHttpRequestHeaders()
	must(err)
	out := make([][2]string, 0, len(hs)+1)
	for _, h := range hs {
		switch {
		case strings.HasPrefix(h[0], "x-drop"):
			continue
		case h[0] == ":path":
			h[1] = "/pairs" + h[1]
		}
		out = append(out, h)
	}
	out = append(out, [2]string{"x-set-by-pairs", "yes"})
	must(proxywasm.ReplaceHttpRequestHeaders(out))
}

func has(name string) bool {
	_, err := proxywasm.GetHttpRequestHeader(name)
	return err == nil
}

// must turns a failed host call into a trap: the conformance test then sees
// the host's failure policy instead of a silently missing header.
func must(err error) {
	if err != nil {
		panic(err)
	}
}
