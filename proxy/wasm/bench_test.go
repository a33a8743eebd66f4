package wasm

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// BenchmarkOnRequestHeaders is one no-op filter round trip per stream:
// bind to a VM (proxy_on_context_create), proxy_on_request_headers,
// proxy_on_done + proxy_on_delete.
func BenchmarkOnRequestHeaders(b *testing.B) {
	b.Run("deadline", func(b *testing.B) { benchNoop(b, false) })
	b.Run("trusted", func(b *testing.B) { benchNoop(b, true) })
}

func benchNoop(b *testing.B, trusted bool) {
	rt := newRuntime(b)
	p := load(b, rt, PluginSpec{Module: wat(b, "noop"), Trusted: trusted}, Env{})
	s := newStream("/bench", "X-A", "1", "X-B", "2")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		f := p.NewStreamFilter(s)
		if f.OnRequestHeaders(s, true) != filter.Continue {
			b.Fatalf("not continue (plugin events: %s)", eventSummary(p))
		}
		f.OnDone(s)
	}
	reportCPU(b, cpu0)
}

// BenchmarkHeaderFilter runs the header-editing filter's request callback
// (a get, an add, a replace of :path, a remove) per stream.
func BenchmarkHeaderFilter(b *testing.B) {
	rt := newRuntime(b)
	p := load(b, rt, PluginSpec{Module: wat(b, "headers")}, Env{})
	s := newStream("/bench", "X-In", "v")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := p.NewStreamFilter(s)
		f.OnRequestHeaders(s, true)
		f.OnDone(s)
		s.Request.Header.Del("X-Wasm")
		s.Request.Header.Del("X-Echo")
	}
}

// TestHostCallsDoNotAllocate proves the host side of the hot path allocates
// nothing in steady state: header reads, writes and serialization straight
// on the fasthttp request. (Each call into the guest costs wazero three
// allocations for its deadline watcher — see BenchmarkOnRequestHeaders.)
func TestHostCallsDoNotAllocate(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/alloc", "X-A", "1", "X-B", "2")
	h := newHostEnv(t, p, s)
	kp, kn := h.put([]byte("x-added"))
	vp, vn := h.put([]byte("value"))
	add, del, size := h.funcs["proxy_replace_header_map_value"].fn, h.funcs["proxy_remove_header_map_value"].fn, h.funcs["proxy_get_header_map_size"].fn
	var st [8]uint64
	v := h.v
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cur = h.f
	allocs := testing.AllocsPerRun(200, func() {
		st = [8]uint64{mapRequestHeaders, kp, kn, vp, vn}
		add(&v.ctx, v.mod, st[:])
		st = [8]uint64{mapRequestHeaders, retLen}
		size(&v.ctx, v.mod, st[:])
		st = [8]uint64{mapRequestHeaders, kp, kn}
		del(&v.ctx, v.mod, st[:])
	})
	v.cur = nil
	if allocs != 0 {
		t.Errorf("%v allocations per header add/size/remove, want 0", allocs)
	}
	if n, _ := v.mem.ReadUint32Le(retLen); n == 0 {
		t.Errorf("header map size not written")
	}
}

// BenchmarkGoGuestStream is a whole no-op stream through the Go SDK noop
// guest (proxy/wasm/testdata/guests/gosdk/noop), every callback a stream
// makes through one filter: context create, request headers, response
// headers, log, done, delete. It is the per-filter cost `weft bench`
// measures end to end, without the network.
func BenchmarkGoGuestStream(b *testing.B) {
	b.Run("deadline", func(b *testing.B) { benchGoGuestStream(b, false) })
	b.Run("trusted", func(b *testing.B) { benchGoGuestStream(b, true) })
}

func benchGoGuestStream(b *testing.B, trusted bool) {
	rt := newRuntime(b)
	p := load(b, rt, PluginSpec{Module: guestbuild.GoSDK(b, "noop"), Trusted: trusted}, Env{})
	s := newStream("/bench", "X-A", "1", "X-B", "2")
	s.Response.SetStatusCode(200)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		f := p.NewStreamFilter(s)
		ok := f.OnRequestHeaders(s, true) == filter.Continue && f.OnResponseHeaders(s, true) == filter.Continue
		f.OnLog(s)
		f.OnDone(s) // before failing: Close waits for the stream
		if !ok {
			b.Fatalf("not continue (plugin events: %s)", eventSummary(p))
		}
	}
	reportCPU(b, cpu0)
}

// reportCPU reports the process's CPU per op since cpu0 (cpu-ns/op): on a
// shared machine it moves less than ns/op, which counts the time the
// benchmark waited for a CPU.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	if cpu := processCPU() - cpu0; cpu > 0 && cpu0 >= 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkWeftSDKStream is a whole stream through a filter written with
// Weft's SDK (proxy/wasm/testdata/weftsdk/callbacks): "noop" implements no
// callback, "headers" sets one request header. The SDK declares the callbacks the filter implements, so the host
// skips the others (weft.stream_callbacks).
func BenchmarkWeftSDKStream(b *testing.B) {
	module := guestbuild.WeftSDK(b, "callbacks")
	for _, kind := range []string{"noop", "headers", "stateless"} {
		b.Run(kind, func(b *testing.B) {
			rt := newRuntime(b)
			p := load(b, rt, PluginSpec{Module: module, PluginConfig: []byte(kind)}, Env{})
			s := newStream("/bench", "X-A", "1", "X-B", "2")
			s.Response.SetStatusCode(200)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				f := p.NewStreamFilter(s)
				ok := f.OnRequestHeaders(s, true) == filter.Continue && f.OnResponseHeaders(s, true) == filter.Continue
				f.OnLog(s)
				f.OnDone(s)
				if !ok {
					b.Fatalf("not continue (plugin events: %s)", eventSummary(p))
				}
			}
			reportCPU(b, cpu0)
		})
	}
}

// eventSummary lists p's non-zero host events, to say why a benchmark's
// stream did not continue.
func eventSummary(p *Plugin) string {
	out := ""
	for i := range p.events.n {
		if n := p.events.n[i].Load(); n != 0 {
			out += fmt.Sprintf("%s=%d ", eventNames[i], n)
		}
	}
	return out
}
