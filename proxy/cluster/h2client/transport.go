// Package h2client is weft's HTTP/2 client for clusters whose protocol is
// http2: an http.RoundTripper over multiplexed connections built on
// golang.org/x/net/http2's Framer and hpack.
//
// Each connection has one reader goroutine and no goroutine per request:
// a request's HEADERS are encoded by the calling goroutine with the
// connection's single HPACK encoder and written through the connection's
// (coalesced) writer; its response headers, DATA and trailers are parsed
// by the reader goroutine into the stream's buffer, which the response
// body's Read takes from. Only a request with a body has a goroutine of
// its own while the body is sent (it may stream for as long as a
// bidirectional call lasts). Values unique to a call (request IDs, trace
// context, deadlines) are sent as never-indexed literals so that they do
// not evict the values every call repeats from the HPACK table.
//
// The client keeps HTTP/2's rules: flow control both ways (a window per
// stream and per connection), SETTINGS (max concurrent streams, initial
// window, max frame size, header table size), PING (answered; sent when a
// connection with streams has been silent, closing it when unanswered),
// GOAWAY (no new streams; streams the server never processed are retried
// on another connection, as are REFUSED_STREAM ones, when their body was
// not read yet), RST_STREAM both ways (a request's context ending or its
// response body closed early resets the stream), and trailers. When every
// connection has as many streams as its server allows, the pool opens
// another, up to MaxConns; beyond that requests wait for a free stream.
// As net/http's transport does, it calls a request's httptrace
// WroteRequest hook once the request went whole: its HEADERS, and its body
// to END_STREAM (weft starts a try's per_try_timeout there).
package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Config configures a Transport.
type Config struct {
	// Dial opens a connection ready for HTTP/2 frames: plaintext, or TLS
	// with h2 negotiated by ALPN. Its errors are returned as they are.
	Dial func(ctx context.Context) (net.Conn, error)
	// MaxConns bounds the transport's connections (0: no bound).
	MaxConns int
	// IdleTimeout closes a connection without streams for that long
	// (0: 60 s).
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response's header list (0: 1 MiB).
	MaxResponseHeaderBytes uint32
	// StreamWindow and ConnWindow are the receive windows advertised for
	// each stream and for the connection (0: 4 MiB and 16 MiB).
	StreamWindow int32
	ConnWindow   int32
	// PingAfter sends a PING on a connection with streams that has read
	// nothing for that long, and PingTimeout closes it when the answer
	// does not come in time (0: 30 s and 15 s).
	PingAfter   time.Duration
	PingTimeout time.Duration
	// Resent, when set, is called each time RoundTrip sends a request
	// again on another connection because the server did not process it
	// (after its GOAWAY's last stream ID, or REFUSED_STREAM).
	Resent func()
}

// Transport is an HTTP/2 client pool for one server address.
type Transport struct {
	cfg Config

	mu      sync.Mutex
	conns   []*conn
	dialing bool
	changed chan struct{} // closed (and replaced) when a stream slot may have freed
	waiters int
	closed  bool

	// testHookIdleClose, set by tests before the first request, runs
	// between the choice of an idle connection to close and its closing.
	testHookIdleClose func(*conn)
}

// New returns a Transport.
func New(cfg Config) *Transport {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxResponseHeaderBytes == 0 {
		cfg.MaxResponseHeaderBytes = 1 << 20
	}
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = 4 << 20
	}
	if cfg.ConnWindow <= 0 {
		cfg.ConnWindow = 16 << 20
	}
	if cfg.ConnWindow < cfg.StreamWindow {
		cfg.ConnWindow = cfg.StreamWindow
	}
	if cfg.PingAfter <= 0 {
		cfg.PingAfter = 30 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 15 * time.Second
	}
	return &Transport{cfg: cfg, changed: make(chan struct{})}
}

// errRetry marks a stream the server did not process (after its GOAWAY's
// last stream ID, or refused): the request may go on another connection.
// body, when set, is a fresh request body (from GetBody) for the retry.
type errRetry struct {
	err  error
	body io.ReadCloser
}

func (e *errRetry) Error() string { return e.err.Error() }
func (e *errRetry) Unwrap() error { return e.err }

// ErrClosed is returned for requests on a closed Transport.
var ErrClosed = errors.New("h2client: transport closed")

// RoundTrip sends req on a stream of a pooled connection and returns the
// response once its headers arrive; its body streams, and its trailers
// are in Trailer after the body's EOF. The request's context ending, or
// the body closed before EOF, resets the stream.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, err := t.getConn(ctx)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := c.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		var r *errRetry
		if errors.As(err, &r) && attempt < 8 && ctx.Err() == nil {
			if r.body != nil {
				r2 := *req
				r2.Body = r.body
				req = &r2
			}
			if t.cfg.Resent != nil {
				t.cfg.Resent()
			}
			continue
		}
		closeBody(req)
		if r != nil {
			err = r.err
		}
		return nil, err
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil && req.Body != http.NoBody {
		_ = req.Body.Close()
	}
}

// getConn returns a connection with a stream slot reserved for the
// caller, dialing one when none has room (one dial at a time).
func (t *Transport) getConn(ctx context.Context) (*conn, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, ErrClosed
		}
		refusing := false
		for _, c := range t.conns {
			ok, zero := c.reserveOrRefusing()
			if ok {
				t.mu.Unlock()
				return c, nil
			}
			refusing = refusing || zero
		}
		// A server that allows no stream now (SETTINGS_MAX_CONCURRENT_STREAMS
		// 0) is waited for, not answered with one connection after another.
		if !t.dialing && !refusing && (t.cfg.MaxConns <= 0 || len(t.conns) < t.cfg.MaxConns) {
			t.dialing = true
			t.mu.Unlock()
			c, err := t.dial(ctx)
			t.mu.Lock()
			t.dialing = false
			t.notifyLocked()
			if err != nil {
				t.mu.Unlock()
				return nil, err
			}
			if t.closed {
				t.mu.Unlock()
				c.close(ErrClosed)
				return nil, ErrClosed
			}
			t.conns = append(t.conns, c)
			ok := c.reserve()
			t.mu.Unlock()
			if ok {
				return c, nil
			}
			continue
		}
		ch := t.changed
		t.waiters++
		t.mu.Unlock()
		select {
		case <-ch:
			t.mu.Lock()
			t.waiters--
			t.mu.Unlock()
		case <-ctx.Done():
			t.mu.Lock()
			t.waiters--
			t.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// notifyLocked wakes the requests waiting for a stream slot.
func (t *Transport) notifyLocked() {
	if t.waiters > 0 {
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

// slotFreed is called by a connection when one of its streams ended or
// its limits changed.
func (t *Transport) slotFreed() {
	t.mu.Lock()
	t.notifyLocked()
	t.mu.Unlock()
}

// removeConn forgets a connection that closed or went away.
func (t *Transport) removeConn(c *conn) {
	t.mu.Lock()
	for i, x := range t.conns {
		if x == c {
			t.conns = append(t.conns[:i], t.conns[i+1:]...)
			break
		}
	}
	t.notifyLocked()
	t.mu.Unlock()
}

func (t *Transport) dial(ctx context.Context) (*conn, error) {
	nc, err := t.cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c, err := newConn(t, nc)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("h2client: %w", err)
	}
	// Streams go once the server's SETTINGS are in (its limit on
	// concurrent streams, first of all).
	timer := time.NewTimer(t.cfg.PingTimeout)
	defer timer.Stop()
	select {
	case <-c.settings:
		return c, nil
	case <-c.readerDone:
		return nil, c.errOr(errors.New("h2client: connection closed before the server's SETTINGS"))
	case <-timer.C:
		err = errors.New("h2client: no SETTINGS from the server in time")
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.close(err)
	return nil, err
}

// CloseIdleConnections closes the connections that carry no stream.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	conns := append([]*conn(nil), t.conns...)
	t.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle()
	}
}

// Close closes every connection, failing the streams on them.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.notifyLocked()
	t.mu.Unlock()
	for _, c := range conns {
		c.close(ErrClosed)
	}
}

// NumConns reports the open connections (for tests and stats).
func (t *Transport) NumConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}
