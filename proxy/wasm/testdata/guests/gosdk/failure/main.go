// Command failure is a conformance guest for the host's failure handling
// and start-up checks:
//   - VM configuration "reject-vm" makes on_vm_start fail, plugin
//     configuration "reject" makes on_configure fail; otherwise both are
//     echoed upstream (x-vm-config, x-plugin-config);
//   - a request with x-panic makes on_request_headers panic (a trap);
//   - a request with x-loop makes on_request_headers spin for ever (a
//     runaway guest, stopped by the callback deadline);
//   - a request with x-hog makes on_request_headers allocate memory,
//     writing to every page, until the Go runtime runs out (it dies at
//     the VM's memory limit); VM configuration "hog-every=N" does the same
//     on every Nth request a VM sees (a hostile filter under plain load);
//   - every other request gets x-filtered: yes.
package main

import (
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
	config string
	// hogEvery, from "hog-every=N", and seen: the VM's requests so far.
	hogEvery, seen int
}

func (v *vm) OnVMStart(int) types.OnVMStartStatus {
	cfg, err := proxywasm.GetVMConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("failure: vm config: %v", err)
		return types.OnVMStartStatusFailed
	}
	v.config = string(cfg)
	if v.config == "reject-vm" {
		return types.OnVMStartStatusFailed
	}
	if n, ok := strings.CutPrefix(v.config, "hog-every="); ok {
		v.hogEvery, _ = strconv.Atoi(n)
	}
	return types.OnVMStartStatusOK
}

func (v *vm) NewPluginContext(uint32) types.PluginContext { return &root{vm: v} }

type root struct {
	types.DefaultPluginContext
	vm     *vm
	config string
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("failure: plugin config: %v", err)
		return types.OnPluginStartStatusFailed
	}
	r.config = string(cfg)
	if r.config == "reject" {
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{root: r} }

type stream struct {
	types.DefaultHttpContext
	root *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if _, err := proxywasm.GetHttpRequestHeader("x-panic"); err == nil {
		panic("failure guest: asked to panic")
	}
	if _, err := proxywasm.GetHttpRequestHeader("x-loop"); err == nil {
		spin()
	}
	if _, err := proxywasm.GetHttpRequestHeader("x-hog"); err == nil {
		hog()
	}
	if v := s.root.vm; v.hogEvery > 0 {
		if v.seen++; v.seen%v.hogEvery == 0 {
			hog()
		}
	}
	must(proxywasm.AddHttpRequestHeader("x-filtered", "yes"))
	must(proxywasm.AddHttpRequestHeader("x-vm-config", s.root.vm.config))
	must(proxywasm.AddHttpRequestHeader("x-plugin-config", s.root.config))
	return types.ActionContinue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// spins counts spin's iterations where the compiler cannot drop them.
var spins uint64

// spin never returns.
//
//go:noinline
func spin() {
	for {
		spins++
	}
}

// hogged keeps what hog allocated reachable.
var hogged [][]byte

// hog allocates 1 MiB blocks, writing to each 4 KiB page (fresh memory
// is not resident until written), until the runtime fails.
func hog() {
	for {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		hogged = append(hogged, b)
	}
}
