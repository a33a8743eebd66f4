package proxy

import (
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/internal/otlptest"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// handlerOf is benchHandler for any testing.TB: the listener handler of a
// proxy in front of a real upstream and a reusable request.
func handlerOf(tb testing.TB, cfg string) (func(*fasthttp.RequestCtx), *fasthttp.RequestCtx, *fasthttp.Request) {
	up := testserver.Start(tb, "up")
	p, _ := startProxy(tb, cfg, map[string]string{"up": up.Addr})
	var rl *runningListener
	for _, l := range p.listeners {
		rl = l
	}
	req := &fasthttp.Request{}
	req.SetRequestURI("http://svc.local/api/items?id=7")
	req.Header.Set("User-Agent", "bench")
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}, zapPrintf{zap.NewNop()})
	return rl.serve, ctx, req
}

// tracingConfig is plainConfig with tracing at pct percent ("" = off),
// exporting to a real OTLP receiver.
func tracingConfig(tb testing.TB, pct string) string {
	cfg := strings.Replace(plainConfig, "limits: {max_header_bytes: 4096, max_body_bytes: 1024}", "", 1)
	if pct == "" {
		return cfg
	}
	rcv := otlptest.Start(tb, false)
	return "tracing: {enabled: true, sampling_percent: " + pct + ", otlp_endpoint: " + rcv.URL + ", flush_interval: 50ms}\n" + cfg
}

// TestTracingHandlerAllocs: with tracing on and the hop not sampled, the
// request path allocates exactly what it does with tracing off (the
// trace headers are parsed and written in pooled, fixed buffers).
func TestTracingHandlerAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation measurement (meaningless under -race: sync.Pool drops items)")
	}
	measure := func(pct string) float64 {
		serve, ctx, req := handlerOf(t, tracingConfig(t, pct))
		run := func() {
			req.CopyTo(&ctx.Request)
			ctx.Response.Reset()
			serve(ctx)
		}
		for i := 0; i < 200; i++ {
			run()
		}
		return testing.AllocsPerRun(2000, run)
	}
	off, on := measure(""), measure("0")
	if on > off+0.05 {
		t.Fatalf("tracing on (not sampled): %.2f allocs per request, off: %.2f", on, off)
	}
}

// BenchmarkProxyHandlerTracing compares the request path with tracing off,
// at 1% and at 100% sampling, in one run. At 100% allocs/op includes the
// exporter goroutine's protobuf encoding of every span (the request path
// itself does not allocate: see TestTracingHandlerAllocs and
// tracing.TestStartEndAllocs).
func BenchmarkProxyHandlerTracing(b *testing.B) {
	for _, bc := range []struct{ name, pct string }{{"off", ""}, {"sample-1pct", "1"}, {"sample-100pct", "100"}} {
		b.Run(bc.name, func(b *testing.B) {
			serve, ctx, req := handlerOf(b, tracingConfig(b, bc.pct))
			b.ReportAllocs()
			for b.Loop() {
				req.CopyTo(&ctx.Request)
				ctx.Response.Reset()
				serve(ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d", ctx.Response.StatusCode())
				}
			}
		})
	}
}
