package wasm

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// BenchmarkGoGuestStreamCold is the public Go SDK no-op stream as a
// proxied request makes it, through a filter chain of one (context
// create, request headers, response headers, the response body, log,
// done, delete: seven callbacks, in four guest entries, or three where
// the chain hands the whole response over in one call),
// measured by the CPU time of the stream alone (stream-cpu-ns/op: the
// thread's CPU clock around it, the clock's own cost taken off):
//   - hot: streams back to back, as BenchmarkGoGuestStream runs them;
//   - cold: 4 MiB of other memory written between two streams, as a
//     proxy's network stack, its other streams and its own code do
//     between the callbacks of one request. What a stream costs end to
//     end is close to this figure, not to the hot one (docs/benchmarks.md,
//     "Wasm cost, round 5").
func BenchmarkGoGuestStreamCold(b *testing.B) {
	b.Run("hot", func(b *testing.B) { benchGoGuestStreamCold(b, guestbuild.GoSDK(b, "noop"), 0) })
	b.Run("cold", func(b *testing.B) { benchGoGuestStreamCold(b, guestbuild.GoSDK(b, "noop"), 4<<20) })
	// The host's part: the same stream into the WAT no-op, whose
	// callbacks return at once (it has no body callback: six entries).
	b.Run("wat-hot", func(b *testing.B) { benchGoGuestStreamCold(b, wat(b, "noop"), 0) })
	b.Run("wat-cold", func(b *testing.B) { benchGoGuestStreamCold(b, wat(b, "noop"), 4<<20) })
}

// BenchmarkGoGuestStreamLive is BenchmarkGoGuestStreamCold with many
// requests in flight at once, as under load (`weft bench` keeps 64): each
// op ends the oldest request's chain (response, log, done, delete) and
// starts a new one in its place (create, request headers), so the guest's
// context tables hold every live request's contexts, not one. A chain is
// 1 or 4 filters of one module sharing a VM (the default): the public Go
// SDK's no-op (gosdk), Weft's SDK's ("weftsdk", configured "noop") and
// the WAT no-op (wat: the host's own path).
// (Giving a finished stream's context id to the next one instead of ever
// increasing ids was measured here and not kept: docs/benchmarks.md,
// "Wasm cost, round 8".)
func BenchmarkGoGuestStreamLive(b *testing.B) {
	for _, g := range []struct {
		name   string
		module func(testing.TB) []byte
		config string
	}{
		{"gosdk", func(t testing.TB) []byte { return guestbuild.GoSDK(t, "noop") }, ""},
		{"weftsdk", func(t testing.TB) []byte { return guestbuild.WeftSDK(t, "callbacks") }, "noop"},
		{"wat", func(t testing.TB) []byte { return wat(t, "noop") }, ""},
	} {
		for _, filters := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/filters=%d/live=64", g.name, filters), func(b *testing.B) {
				benchGoGuestStreamLive(b, g.module(b), g.config, filters, 4<<20, 64, false)
			})
			// Requests ending in a random order, as they do (a slow
			// upstream answer, a client that reads late): the live ids
			// then span more than requests × filters.
			b.Run(fmt.Sprintf("%s/filters=%d/live=64/random", g.name, filters), func(b *testing.B) {
				benchGoGuestStreamLive(b, g.module(b), g.config, filters, 4<<20, 64, true)
			})
		}
	}
}

func benchGoGuestStreamLive(b *testing.B, module []byte, config string, filters, evict, live int, random bool) {
	rt := newRuntime(b)
	plugins := make([]*Plugin, filters)
	for i := range plugins {
		plugins[i] = load(b, rt, PluginSpec{Name: fmt.Sprintf("f%d", i), Module: module, ShareVMs: true, PluginConfig: []byte(config)}, Env{})
	}
	streams := make([]*filter.Stream, live)
	chains := make([]filter.Chain, live)
	started := make([]bool, live)
	for i := range streams {
		s := newStream("/bench", "X-A", "1", "X-B", "2")
		s.Response.SetStatusCode(200)
		s.Response.SetBody([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
		streams[i] = s
	}
	other := make([]byte, evict)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clock := threadCPUCost()
	var in time.Duration
	pick := rand.New(rand.NewPCG(1, 2)) // the same order every run
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < len(other); j += 64 {
			other[j]++
		}
		k := i % live
		if random && i >= live {
			k = pick.IntN(live)
		}
		c, s := &chains[k], streams[k]
		t0 := threadCPU()
		ok := true
		if started[k] {
			ok = c.Encode(s) == filter.Continue
			c.Finish(s)
			c.Reset()
		}
		for _, p := range plugins {
			c.Add(p, s)
		}
		ok = ok && c.DecodeFrom(s, 0) == filter.Continue
		started[k] = true
		in += threadCPU() - t0 - clock
		if !ok {
			b.Fatalf("not continue (plugin events: %s)", eventSummary(plugins[0]))
		}
	}
	b.StopTimer()
	for k := range chains {
		if started[k] {
			chains[k].Encode(streams[k])
			chains[k].Finish(streams[k])
			chains[k].Reset()
		}
	}
	b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "request-cpu-ns/op")
}

func benchGoGuestStreamCold(b *testing.B, module []byte, evict int) {
	rt := newRuntime(b)
	p := load(b, rt, PluginSpec{Module: module}, Env{})
	s := newStream("/bench", "X-A", "1", "X-B", "2")
	s.Response.SetStatusCode(200)
	s.Response.SetBody([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	other := make([]byte, evict)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clock := threadCPUCost()
	var in time.Duration
	var c filter.Chain
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < len(other); j += 64 {
			other[j]++
		}
		t0 := threadCPU()
		c.Add(p, s)
		ok := c.DecodeFrom(s, 0) == filter.Continue && c.Encode(s) == filter.Continue
		c.Finish(s)
		c.Reset()
		in += threadCPU() - t0 - clock
		if !ok {
			b.Fatalf("not continue (plugin events: %s)", eventSummary(p))
		}
	}
	b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "stream-cpu-ns/op")
}

// threadCPU is the calling thread's CPU time.
// threadCPUCost is threadCPU's own cost: the mean of 1,000 reads taken
// back to back, to take off each timed span.
func threadCPUCost() time.Duration {
	var clock time.Duration
	for i := 0; i < 1000; i++ {
		t0 := threadCPU()
		clock += threadCPU() - t0
	}
	return clock / 1000
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}
