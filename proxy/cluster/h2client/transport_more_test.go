package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// New fills each unset (zero or negative) field with its documented
// default and keeps a set one; the connection window is at least the
// stream window.
func TestNewDefaults(t *testing.T) {
	def := Config{IdleTimeout: 60 * time.Second, MaxResponseHeaderBytes: 1 << 20, StreamWindow: 4 << 20, ConnWindow: 16 << 20,
		PingAfter: 30 * time.Second, PingTimeout: 15 * time.Second}
	for _, tt := range []struct {
		name    string
		in, out Config
	}{
		{"zero", Config{}, def},
		{"negative", Config{IdleTimeout: -1, StreamWindow: -1, ConnWindow: -1, PingAfter: -1, PingTimeout: -1}, def},
		{"set", Config{IdleTimeout: 5 * time.Second, MaxResponseHeaderBytes: 100, StreamWindow: 1000, ConnWindow: 2000, PingAfter: 7 * time.Second, PingTimeout: 3 * time.Second},
			Config{IdleTimeout: 5 * time.Second, MaxResponseHeaderBytes: 100, StreamWindow: 1000, ConnWindow: 2000, PingAfter: 7 * time.Second, PingTimeout: 3 * time.Second}},
		{"conn window below the stream's", Config{StreamWindow: 1 << 20, ConnWindow: 1000},
			Config{IdleTimeout: 60 * time.Second, MaxResponseHeaderBytes: 1 << 20, StreamWindow: 1 << 20, ConnWindow: 1 << 20, PingAfter: 30 * time.Second, PingTimeout: 15 * time.Second}},
		{"default conn window below the stream's", Config{StreamWindow: 32 << 20},
			Config{IdleTimeout: 60 * time.Second, MaxResponseHeaderBytes: 1 << 20, StreamWindow: 32 << 20, ConnWindow: 32 << 20, PingAfter: 30 * time.Second, PingTimeout: 15 * time.Second}},
	} {
		tr := New(tt.in)
		tr.Close()
		got, want := tr.cfg, tt.out
		got.Dial = nil
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("%s: New(%+v) configured %+v, want %+v", tt.name, tt.in, got, want)
		}
	}
}

// A request whose stream the server keeps refusing (REFUSED_STREAM: not
// processed) goes again, 9 tries in all, and then fails with the
// server's error, not the retry marker.
func TestRefusedStreamRetriesBounded(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	var resent atomic.Int32
	tr, _ := newTransport(t, addr, Config{Resent: func() { resent.Add(1) }})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://weft.test/x", nil)
	res := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		res <- result{resp, err}
	}()
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server end refuses every stream, in a goroutine of its own
	// (stopped by closing the connection), until the request ends.
	var tries atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := p.fr.ReadFrame()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				tries.Add(1)
				if p.fr.WriteRSTStream(h.StreamID, http2.ErrCodeRefusedStream) != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() { _ = p.nc.Close(); <-done })
	r := await(t, res)
	if n := tries.Load(); n != 9 {
		t.Fatalf("the request was sent %d times, want 9", n)
	}
	if n := resent.Load(); n != 8 {
		t.Fatalf("Config.Resent called %d times, want 8 (each send after the first)", n)
	}
	var se http2.StreamError
	if r.err == nil || !errors.As(r.err, &se) || se.Code != http2.ErrCodeRefusedStream {
		t.Fatalf("after 9 refusals: %v, want the REFUSED_STREAM stream error", r.err)
	}
	if _, ok := r.err.(*errRetry); ok {
		t.Fatalf("the error returned is the retry marker: %v", r.err)
	}
}

// closeTracker is a request body that records its Close.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

// A request that fails before it is sent (the dial fails) has its body
// closed, as http.RoundTripper requires.
func TestFailedRequestClosesBody(t *testing.T) {
	dialErr := errors.New("no route to the test's server")
	tr := New(Config{Dial: func(context.Context) (net.Conn, error) { return nil, dialErr }})
	t.Cleanup(tr.Close)
	b := &closeTracker{Reader: strings.NewReader("body")}
	req, _ := http.NewRequest("POST", "http://weft.test/x", b)
	if _, err := tr.RoundTrip(req); !errors.Is(err, dialErr) {
		t.Fatalf("RoundTrip: %v, want the dial's error", err)
	}
	if !b.closed.Load() {
		t.Fatal("the request body was not closed")
	}
	// A request without a body fails the same way (nothing to close).
	req, _ = http.NewRequest("GET", "http://weft.test/x", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, dialErr) {
		t.Fatalf("RoundTrip without a body: %v, want the dial's error", err)
	}
}

// With MaxConns 1 and a server allowing one stream, a second request
// waits for the first's slot rather than dialing, goes once it frees,
// and leaves no waiter counted; a connection the server closes leaves
// the pool.
func TestWaiterWokenAndClosedConnRemoved(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, dials := newTransport(t, addr, Config{MaxConns: 1})
	resA := send(tr, "GET", "")
	p := next(t, peers)
	if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1}); err != nil {
		t.Fatal(err)
	}
	isHeaders := func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }
	idA := p.readUntil(t, "the first request's HEADERS", isHeaders).Header().StreamID
	waiters := func() int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.waiters
	}
	resB := send(tr, "GET", "")
	poll(t, "the second request waiting", func() bool { return waiters() != 0 || dials.Load() != 1 })
	if n, d := waiters(), dials.Load(); n != 1 || d != 1 {
		t.Fatalf("second request: %d waiters counted (want 1), %d dials (want 1)", n, d)
	}
	p.respond(t, idA)
	if r := await(t, resA); r.err != nil {
		t.Fatalf("first request: %v", r.err)
	}
	idB := p.readUntil(t, "the second request's HEADERS", isHeaders).Header().StreamID
	p.respond(t, idB)
	if r := await(t, resB); r.err != nil {
		t.Fatalf("second request: %v", r.err)
	}
	if n, d := waiters(), dials.Load(); n != 0 || d != 1 {
		t.Fatalf("after both requests: %d waiters counted (want 0), %d dials (want 1)", n, d)
	}
	if n := tr.NumConns(); n != 1 {
		t.Fatalf("%d connections before the server closes its end, want 1", n)
	}
	_ = p.nc.Close()
	poll(t, "the closed connection leaving the pool", func() bool { return tr.NumConns() == 0 })
}

// poll waits for cond, checking every few milliseconds, within wait.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request waiting for a stream slot gives up when its context ends,
// with the context's error, and is no longer counted as waiting.
func TestWaiterGivesUpWithItsContext(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, dials := newTransport(t, addr, Config{MaxConns: 1})
	resA := send(tr, "GET", "")
	p := next(t, peers)
	if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1}); err != nil {
		t.Fatal(err)
	}
	idA := p.readUntil(t, "the first request's HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
	waiters := func() int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.waiters
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resB := roundTrip(tr, ctx)
	poll(t, "the second request waiting", func() bool { return waiters() != 0 })
	cancel()
	if r := await(t, resB); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the waiting request: %+v, want context.Canceled", r)
	}
	if n, d := waiters(), dials.Load(); n != 0 || d != 1 {
		t.Fatalf("after it gave up: %d waiters counted (want 0), %d dials (want 1)", n, d)
	}
	p.respond(t, idA)
	if r := await(t, resA); r.err != nil {
		t.Fatalf("first request: %v", r.err)
	}
}
