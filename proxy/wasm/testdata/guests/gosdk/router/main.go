// Command router is a Proxy-Wasm filter that decides where a request goes
// and leaves the decision in a header for the route table: its plugin
// configuration is a comma-separated list of users; a request whose x-user
// is in the list gets x-route: canary, any other x-route: stable (a value
// the client sent is overwritten). The response carries the same x-route,
// so the client sees the decision too.
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
	canary map[string]bool
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	r.canary = map[string]bool{}
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		return types.OnPluginStartStatusOK // no list: everyone is stable
	}
	for _, u := range strings.Split(string(cfg), ",") {
		if u = strings.TrimSpace(u); u != "" {
			r.canary[u] = true
		}
	}
	return types.OnPluginStartStatusOK
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{root: r} }

type stream struct {
	types.DefaultHttpContext
	root  *root
	route string
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.route = "stable"
	if u, err := proxywasm.GetHttpRequestHeader("x-user"); err == nil && s.root.canary[u] {
		s.route = "canary"
	}
	must(proxywasm.ReplaceHttpRequestHeader("x-route", s.route))
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.route != "" {
		must(proxywasm.ReplaceHttpResponseHeader("x-route", s.route))
	}
	return types.ActionContinue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
