// Command declareprop is a conformance guest for Envoy's declare_property
// foreign function. At plugin start it declares "ro" (string, readonly)
// and "rw" (bytes), then tries to declare "ro" again and a protobuf-typed
// "pb". On each request it sets ro twice and rw twice, reads both back,
// and reports every outcome in request headers (x-declare-*, x-ro-set-1,
// x-ro-set-2, x-rw-set-2, x-ro, x-rw): "ok" or the error.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

type root struct {
	types.DefaultPluginContext
	declared [][2]string
}

// declareArgs encodes Envoy's DeclarePropertyArguments (name = 1,
// readonly = 2, type = 3, span = 5) by hand.
func declareArgs(name string, readonly bool, typ, span byte) []byte {
	b := append([]byte{0x0a, byte(len(name))}, name...)
	if readonly {
		b = append(b, 0x10, 1)
	}
	return append(b, 0x18, typ, 0x28, span)
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	for _, d := range []struct {
		header string
		args   []byte
	}{
		{"x-declare-ro", declareArgs("ro", true, 1, 1)},
		{"x-declare-rw", declareArgs("rw", false, 0, 0)},
		{"x-declare-ro-again", declareArgs("ro", false, 0, 0)},
		{"x-declare-pb", declareArgs("pb", false, 3, 0)},
	} {
		_, err := proxywasm.CallForeignFunction("declare_property", d.args)
		r.declared = append(r.declared, [2]string{d.header, outcome(err)})
	}
	return types.OnPluginStartStatusOK
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{r: r} }

type stream struct {
	types.DefaultHttpContext
	r *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	for _, d := range s.r.declared {
		add(d[0], d[1])
	}
	add("x-ro-set-1", outcome(proxywasm.SetProperty([]string{"ro"}, []byte("first"))))
	add("x-ro-set-2", outcome(proxywasm.SetProperty([]string{"ro"}, []byte("second"))))
	add("x-rw-set-1", outcome(proxywasm.SetProperty([]string{"rw"}, []byte("one"))))
	add("x-rw-set-2", outcome(proxywasm.SetProperty([]string{"rw"}, []byte("two"))))
	for _, name := range []string{"ro", "rw"} {
		v, err := proxywasm.GetProperty([]string{name})
		if err != nil {
			add("x-"+name, err.Error())
			continue
		}
		add("x-"+name, string(v))
	}
	return types.ActionContinue
}

func add(name, value string) {
	if err := proxywasm.AddHttpRequestHeader(name, value); err != nil {
		panic(err)
	}
}

func outcome(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}
