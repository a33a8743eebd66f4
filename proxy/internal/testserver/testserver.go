// Package testserver runs real upstream HTTP servers on loopback for the
// proxy's end-to-end tests: each answers with its name, can fail, stall or
// cut the connection on demand, and records what it received. Test-only.
package testserver

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Upstream is one real fasthttp server on 127.0.0.1.
type Upstream struct {
	Name string
	Addr string

	ln  net.Listener
	srv *fasthttp.Server

	// Hits counts requests received.
	Hits atomic.Int64
	// Status, when non-zero, is answered instead of 200.
	Status atomic.Int64
	// FailFirst answers 503 to this many requests before succeeding.
	FailFirst atomic.Int64
	// Delay stalls each answer (nanoseconds).
	Delay atomic.Int64
	// CutMidResponse makes the server announce a body and close early.
	CutMidResponse atomic.Bool
	// hold, when set, holds every answer until it is closed (see Hold).
	hold atomic.Pointer[chan struct{}]

	mu   sync.Mutex
	last *fasthttp.Request
	seen []string // request paths, in order
}

// Start starts an upstream; it is closed when the test ends.
func Start(t testing.TB, name string) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstream{Name: name, Addr: ln.Addr().String(), ln: ln}
	u.srv = &fasthttp.Server{Handler: u.handle, NoDefaultServerHeader: true, CloseOnShutdown: true}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(u.Stop)
	return u
}

// Stop closes the server now (a killed endpoint). The socket is closed too,
// so a Serve that had not started yet does not accept forever.
func (u *Upstream) Stop() {
	_ = u.srv.Shutdown()
	_ = u.ln.Close()
}

func (u *Upstream) handle(ctx *fasthttp.RequestCtx) {
	u.Hits.Add(1)
	u.mu.Lock()
	if u.last == nil {
		u.last = &fasthttp.Request{}
	}
	ctx.Request.CopyTo(u.last)
	u.seen = append(u.seen, string(ctx.Path()))
	u.mu.Unlock()
	if h := u.hold.Load(); h != nil {
		<-*h
	}
	if d := u.Delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if u.CutMidResponse.Load() {
		conn := ctx.Conn()
		_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial"))
		_ = conn.Close()
		return
	}
	if u.FailFirst.Load() > 0 && u.FailFirst.Add(-1) >= 0 {
		ctx.Error("failing on purpose", fasthttp.StatusServiceUnavailable)
		return
	}
	if s := u.Status.Load(); s != 0 {
		ctx.SetStatusCode(int(s))
	}
	ctx.Response.Header.Set("X-Upstream", u.Name)
	ctx.SetBodyString(u.Name)
}

// Hold makes the upstream hold every answer until release is called (at
// the latest when the test ends), so that a test decides when the requests
// in flight end instead of guessing a delay long enough on a busy machine.
func (u *Upstream) Hold(t testing.TB) (release func()) {
	ch := make(chan struct{})
	u.hold.Store(&ch)
	var once sync.Once
	release = func() {
		once.Do(func() {
			u.hold.Store(nil)
			close(ch)
		})
	}
	t.Cleanup(release)
	return release
}

// Last is a copy of the last request received (nil when none).
func (u *Upstream) Last() *fasthttp.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.last == nil {
		return nil
	}
	r := &fasthttp.Request{}
	u.last.CopyTo(r)
	return r
}

// Paths are the request paths received, in order.
func (u *Upstream) Paths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}
