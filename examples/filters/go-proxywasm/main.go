package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

const (
	name = "x-weft-example"
	lang = "go-proxywasm"
)

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

type root struct{ types.DefaultPluginContext }

func (*root) OnPluginStart(int) types.OnPluginStartStatus {
	proxywasm.LogInfo("go-proxywasm example filter configured")
	return types.OnPluginStartStatusOK
}

func (*root) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpRequestHeader(name, lang); err != nil {
		proxywasm.LogErrorf("adding %s: %v", name, err)
	}
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader(name, lang); err != nil {
		proxywasm.LogErrorf("adding %s: %v", name, err)
	}
	if status, err := proxywasm.GetHttpResponseHeader(":status"); err == nil {
		_ = proxywasm.ReplaceHttpResponseHeader("x-weft-example-status", status)
	}
	return types.ActionContinue
}
