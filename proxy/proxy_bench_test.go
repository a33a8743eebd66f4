package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// benchHandler returns the listener handler of a proxy in front of a real
// upstream, and a reusable RequestCtx holding a typical request. Calling
// the handler directly measures the proxy's own work (routing, balancing,
// the upstream round trip through the pooled client) without a
// downstream socket; the in-process upstream is fasthttp and allocates
// nothing in steady state.
func benchHandler(b testing.TB, cfg string) (func(*fasthttp.RequestCtx), *fasthttp.RequestCtx, *fasthttp.Request) {
	up := testserver.Start(b, "up")
	p, _ := startProxy(b, cfg, map[string]string{"up": up.Addr})
	_ = p
	var rl *runningListener
	for _, l := range p.listeners {
		rl = l
	}
	req := &fasthttp.Request{}
	req.SetRequestURI("http://svc.local/api/items?id=7")
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}, zapPrintf{zap.NewNop()})
	return rl.serve, ctx, req
}

type zapPrintf struct{ l *zap.Logger }

func (zapPrintf) Printf(string, ...any) {}

func BenchmarkProxyHandler(b *testing.B) {
	serve, ctx, req := benchHandler(b, strings.Replace(plainConfig, "limits: {max_header_bytes: 4096, max_body_bytes: 1024}", "", 1))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		serve(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// TestProxyHandlerAllocs holds the budget: at most 2 allocations
// per proxied request in steady state, counted over the whole process (the
// in-process test upstream's own recording of the path is one of them).
func TestProxyHandlerAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation measurement (meaningless under -race: sync.Pool drops items)")
	}
	serve, ctx, req := benchHandler(t, strings.Replace(plainConfig, "limits: {max_header_bytes: 4096, max_body_bytes: 1024}", "", 1))
	run := func() {
		req.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		serve(ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
	for i := 0; i < 200; i++ {
		run()
	}
	if n := testing.AllocsPerRun(2000, run); n > 2 {
		t.Fatalf("%.2f allocations per proxied request, want at most 2", n)
	}
}

// streamedHandler is benchHandler in front of an upstream whose 256 KiB
// answers do not fit the upstream read buffer, so their bodies stream;
// write drives the response out as fasthttp's server does (and closes
// the body stream, which finishes the exchange).
func streamedHandler(b testing.TB) (serve func(*fasthttp.RequestCtx), ctx *fasthttp.RequestCtx, req *fasthttp.Request, write func()) {
	body := []byte(strings.Repeat("s", 256<<10))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	p, _ := startProxy(b, strings.Replace(plainConfig, "limits: {max_header_bytes: 4096, max_body_bytes: 1024}", "", 1),
		map[string]string{"up": ln.Addr().String()})
	var rl *runningListener
	for _, l := range p.listeners {
		rl = l
	}
	req = &fasthttp.Request{}
	req.SetRequestURI("http://svc.local/download")
	ctx = &fasthttp.RequestCtx{}
	ctx.Init2(benchConn{}, zapPrintf{zap.NewNop()}, false) // a streamed body sets write deadlines
	req.CopyTo(&ctx.Request)
	bw := bufio.NewWriterSize(io.Discard, 4096)
	write = func() {
		if err := ctx.Response.Write(bw); err != nil {
			b.Fatal(err)
		}
		_ = bw.Flush()
	}
	return rl.serve, ctx, req, write
}

func BenchmarkProxyHandlerStreamed(b *testing.B) {
	serve, ctx, req, write := streamedHandler(b)
	b.SetBytes(256 << 10)
	b.ReportAllocs()
	for b.Loop() {
		req.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		serve(ctx)
		if !ctx.Response.IsBodyStream() {
			b.Fatal("the body did not stream")
		}
		write()
	}
}

// TestProxyHandlerStreamedAllocs: a response whose body streams costs no
// more allocations than one that came whole.
func TestProxyHandlerStreamedAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation measurement (meaningless under -race: sync.Pool drops items)")
	}
	serve, ctx, req, write := streamedHandler(t)
	run := func() {
		req.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		serve(ctx)
		if !ctx.Response.IsBodyStream() {
			t.Fatal("the body did not stream")
		}
		write()
	}
	for i := 0; i < 50; i++ {
		run()
	}
	if n := testing.AllocsPerRun(300, run); n > 2 {
		t.Fatalf("%.2f allocations per proxied streamed request, want at most 2", n)
	}
}

// benchConn is the client connection of a handler called directly: only
// its addresses and deadlines are used.
type benchConn struct{ net.Conn }

var benchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}

func (benchConn) RemoteAddr() net.Addr             { return benchAddr }
func (benchConn) LocalAddr() net.Addr              { return benchAddr }
func (benchConn) SetDeadline(time.Time) error      { return nil }
func (benchConn) SetReadDeadline(time.Time) error  { return nil }
func (benchConn) SetWriteDeadline(time.Time) error { return nil }
