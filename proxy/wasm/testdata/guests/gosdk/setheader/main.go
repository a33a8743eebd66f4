// Command setheader is a Proxy-Wasm filter configured by its plugin
// configuration, "NAME=VALUE": it sets request header NAME to VALUE (the
// upstream and the route table see it) and the same header on the response
// (the client sees which configuration served it). With no "=" in the
// configuration, on_configure fails and the plugin is refused.
package main

import (
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

type root struct {
	types.DefaultPluginContext
	name, value string
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogCriticalf("setheader: no plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	name, value, ok := strings.Cut(strings.TrimSpace(string(cfg)), "=")
	if !ok || name == "" {
		proxywasm.LogCriticalf("setheader: plugin configuration %q is not NAME=VALUE", cfg)
		return types.OnPluginStartStatusFailed
	}
	r.name, r.value = strings.ToLower(name), value
	return types.OnPluginStartStatusOK
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{root: r} }

type stream struct {
	types.DefaultHttpContext
	root *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	must(proxywasm.ReplaceHttpRequestHeader(s.root.name, s.root.value))
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	must(proxywasm.ReplaceHttpResponseHeader(s.root.name, s.root.value))
	return types.ActionContinue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
