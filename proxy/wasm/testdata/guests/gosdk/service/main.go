// Command service is a conformance guest for Wasm services (plugins on no
// listener) and the filters that talk to them. Its plugin config picks the
// role:
//
//   - "service": the root registers the shared queue "jobs", ticks every
//     10ms counting ticks in shared data "service.ticks", on its first tick
//     calls cluster "up" (GET /from-service) and stores the answer's status
//     in "service.callout", and drains "jobs" into "service.seen"
//     ("seen:a,b") in on_queue_ready.
//   - "filter": each stream enqueues its x-enqueue header on "jobs" (resolved
//     by the filter's own vm_id, which the service shares) and sends the three
//     shared values upstream as x-service-ticks, x-service-callout and
//     x-service-seen.
package main

import (
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }

type vm struct{ types.DefaultVMContext }

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

type root struct {
	types.DefaultPluginContext
	role    string
	queue   uint32
	ticks   int
	calling bool
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, _ := proxywasm.GetPluginConfiguration()
	r.role = string(cfg)
	switch r.role {
	case "service":
		id, err := proxywasm.RegisterSharedQueue("jobs")
		if err != nil {
			proxywasm.LogCriticalf("service: register queue: %v", err)
			return types.OnPluginStartStatusFailed
		}
		r.queue = id
		if err := proxywasm.SetTickPeriodMilliSeconds(10); err != nil {
			proxywasm.LogCriticalf("service: tick period: %v", err)
			return types.OnPluginStartStatusFailed
		}
	case "filter":
	default:
		proxywasm.LogCriticalf("service: unknown role %q", r.role)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (r *root) OnTick() {
	r.ticks++
	set("service.ticks", strconv.Itoa(r.ticks))
	if r.calling {
		return
	}
	r.calling = true
	hs := [][2]string{{":method", "GET"}, {":path", "/from-service"}, {":authority", "up"}}
	if _, err := proxywasm.DispatchHttpCall("up", hs, nil, nil, 5000, func(int, int, int) {
		st := "failed"
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		for _, h := range hs {
			if h[0] == ":status" {
				st = h[1]
			}
		}
		set("service.callout", st)
	}); err != nil {
		set("service.callout", "dispatch failed: "+err.Error())
	}
}

func (r *root) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return
		}
		seen := get("service.seen")
		if seen == "" {
			seen = "seen:" + string(item)
		} else {
			seen += "," + string(item)
		}
		set("service.seen", seen)
	}
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if v, err := proxywasm.GetHttpRequestHeader("x-enqueue"); err == nil {
		vmID, err := proxywasm.GetProperty([]string{"plugin_vm_id"})
		must(err)
		id, err := proxywasm.ResolveSharedQueue(string(vmID), "jobs")
		must(err)
		must(proxywasm.EnqueueSharedQueue(id, []byte(v)))
	}
	for _, k := range []string{"ticks", "callout", "seen"} {
		must(proxywasm.AddHttpRequestHeader("x-service-"+k, get("service."+k)))
	}
	return types.ActionContinue
}

func get(key string) string {
	v, _, err := proxywasm.GetSharedData(key)
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		panic(err)
	}
	return string(v)
}

// set writes key unconditionally: only the service's single root writes.
func set(key, val string) { must(proxywasm.SetSharedData(key, []byte(val), 0)) }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
