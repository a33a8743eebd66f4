// Command sharedvm is a conformance guest for plugins that share one VM.
// Its globals are the VM's: how many times on_vm_start ran, how many root
// contexts live in the VM, how many streams every plugin of the VM served.
//
// Plugin config is the plugin's name, optionally followed by ",tick": that
// root ticks every 10ms and counts its own ticks. On request headers each
// stream adds, for its plugin NAME:
//   - x-NAME-root: its root context id
//   - x-NAME-plugin-name: the host's plugin_name property
//   - x-NAME-vm-starts, x-NAME-roots: the VM's counts
//   - x-NAME-streams: streams of every plugin of this VM so far, this one included
//   - x-NAME-ticks: ticks of its root
package main

import (
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

var vmStarts, liveRoots, streams int

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
}

func (*vm) OnVMStart(int) types.OnVMStartStatus {
	vmStarts++
	return types.OnVMStartStatusOK
}

func (*vm) NewPluginContext(id uint32) types.PluginContext {
	liveRoots++
	return &root{id: id}
}

type root struct {
	types.DefaultPluginContext
	id    uint32
	name  string
	ticks int
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil || len(cfg) == 0 {
		proxywasm.LogCritical("sharedvm: plugin config must name the plugin")
		return types.OnPluginStartStatusFailed
	}
	name, opt, _ := strings.Cut(string(cfg), ",")
	r.name = name
	if opt == "tick" {
		if err := proxywasm.SetTickPeriodMilliSeconds(10); err != nil {
			proxywasm.LogCriticalf("sharedvm: tick period: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	return types.OnPluginStartStatusOK
}

func (r *root) OnTick() { r.ticks++ }

func (r *root) OnPluginDone() bool {
	liveRoots--
	return true
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{root: r} }

type stream struct {
	types.DefaultHttpContext
	root *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	streams++
	r := s.root
	pn, _ := proxywasm.GetProperty([]string{"plugin_name"})
	for _, kv := range [][2]string{
		{"root", strconv.Itoa(int(r.id))},
		{"plugin-name", string(pn)},
		{"vm-starts", strconv.Itoa(vmStarts)},
		{"roots", strconv.Itoa(liveRoots)},
		{"streams", strconv.Itoa(streams)},
		{"ticks", strconv.Itoa(r.ticks)},
	} {
		if err := proxywasm.AddHttpRequestHeader("x-"+r.name+"-"+kv[0], kv[1]); err != nil {
			panic(err)
		}
	}
	return types.ActionContinue
}
