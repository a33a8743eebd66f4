package wasm

import (
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

func benchGoGuestStreamCold(b *testing.B, module []byte, evict int) {
	rt := newRuntime(b)
	p := load(b, rt, PluginSpec{Module: module}, Env{})
	s := newStream("/bench", "X-A", "1", "X-B", "2")
	s.Response.SetStatusCode(200)
	s.Response.SetBody([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	other := make([]byte, evict)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// The clock's own cost, read the same way with nothing between.
	var clock time.Duration
	for i := 0; i < 1000; i++ {
		t0 := threadCPU()
		clock += threadCPU() - t0
	}
	clock /= 1000
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
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}
