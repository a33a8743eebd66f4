// Command timers is a conformance guest: its root context sets a tick period
// (plugin config: milliseconds, default 20) and on every tick bumps the
// shared-data counter "timers.ticks" and resumes the streams that paused
// waiting for a tick (x-wait-for-tick), adding x-resumed-by to their request.
//
// Streams with x-wait-for-release stay paused until a tick finds the shared
// key "timers.release" set (by a request with x-release); x-read-waiting
// sends upstream how many such streams this VM's root holds.
package main

import (
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const (
	ticksKey   = "timers.ticks"
	releaseKey = "timers.release"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
}

func (*vm) NewPluginContext(uint32) types.PluginContext {
	return &root{waiting: map[uint32]bool{}, held: map[uint32]bool{}}
}

type root struct {
	types.DefaultPluginContext
	ticks   int
	waiting map[uint32]bool // stream context ids paused until the next tick
	held    map[uint32]bool // stream context ids paused until released
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	period := uint32(20)
	if cfg, err := proxywasm.GetPluginConfiguration(); err == nil && len(cfg) > 0 {
		n, err := strconv.Atoi(string(cfg))
		if err != nil || n <= 0 {
			proxywasm.LogCriticalf("timers: bad tick period %q", cfg)
			return types.OnPluginStartStatusFailed
		}
		period = uint32(n)
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(period); err != nil {
		proxywasm.LogCriticalf("timers: set tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (r *root) OnTick() {
	r.ticks++
	for {
		v, cas, err := proxywasm.GetSharedData(ticksKey)
		if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			panic(err)
		}
		n, _ := strconv.Atoi(string(v))
		err = proxywasm.SetSharedData(ticksKey, []byte(strconv.Itoa(n+1)), cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			continue
		}
		must(err)
		break
	}
	for id := range r.waiting {
		delete(r.waiting, id)
		must(proxywasm.SetEffectiveContext(id))
		must(proxywasm.AddHttpRequestHeader("x-resumed-by", "tick"))
		must(proxywasm.AddHttpRequestHeader("x-root-ticks", strconv.Itoa(r.ticks)))
		must(proxywasm.ResumeHttpRequest())
	}
	if len(r.held) == 0 {
		return
	}
	if _, _, err := proxywasm.GetSharedData(releaseKey); err != nil {
		return // not released yet
	}
	for id := range r.held {
		delete(r.held, id)
		must(proxywasm.SetEffectiveContext(id))
		must(proxywasm.AddHttpRequestHeader("x-resumed-by", "release"))
		must(proxywasm.ResumeHttpRequest())
	}
}

func (r *root) NewHttpContext(id uint32) types.HttpContext {
	return &stream{id: id, root: r}
}

type stream struct {
	types.DefaultHttpContext
	id   uint32
	root *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if has("x-read-ticks") {
		v, _, err := proxywasm.GetSharedData(ticksKey)
		if errors.Is(err, types.ErrorStatusNotFound) {
			v = []byte("0")
		} else {
			must(err)
		}
		must(proxywasm.AddHttpRequestHeader("x-ticks", string(v)))
	}
	if has("x-read-waiting") {
		must(proxywasm.AddHttpRequestHeader("x-held", strconv.Itoa(len(s.root.held))))
	}
	if has("x-release") {
		must(proxywasm.SetSharedData(releaseKey, []byte("1"), 0))
	}
	if has("x-wait-for-tick") {
		s.root.waiting[s.id] = true
		return types.ActionPause
	}
	if has("x-wait-for-release") {
		s.root.held[s.id] = true
		return types.ActionPause
	}
	return types.ActionContinue
}

func has(name string) bool {
	_, err := proxywasm.GetHttpRequestHeader(name)
	return err == nil
}

func (s *stream) OnHttpStreamDone() {
	// An aborted stream must not be resumed later.
	delete(s.root.waiting, s.id)
	delete(s.root.held, s.id)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
