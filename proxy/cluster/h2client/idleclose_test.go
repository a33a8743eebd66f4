package h2client

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A request never fails because the pool closes an idle connection: once
// the pool has chosen the connection to close, no new stream takes it.
// The hook sends a request right after that choice and holds the closing
// until the request is at the server, the interleaving that used to fail
// the request with "idle connection closed".
func TestRequestRacingIdleClose(t *testing.T) {
	for _, tc := range []struct {
		name        string
		idleTimeout time.Duration
		byCall      bool // CloseIdleConnections, not the idle timeout
	}{
		{"idle timeout", 200 * time.Millisecond, false},
		{"CloseIdleConnections", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			release := make(chan struct{})
			var releaseOnce sync.Once
			addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Hold") != "" {
					arrived <- struct{}{}
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
				_, _ = io.WriteString(w, "ok")
			}), nil, nil)
			t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the server's
			tr, dials := newTransport(t, addr, Config{IdleTimeout: tc.idleTimeout})

			// The first connection the pool chooses to close is the one
			// the warm-up request opened (it is the only one).
			var idle atomic.Pointer[conn]
			var got result
			reqDone := make(chan struct{})
			hookDone := make(chan struct{})
			tr.testHookIdleClose = func(c *conn) {
				if !idle.CompareAndSwap(nil, c) {
					return
				}
				defer close(hookDone)
				go func() { defer close(reqDone); got = <-send(tr, "GET", "", "X-Hold", "1") }()
				select {
				case <-arrived:
				case <-reqDone: // failed before reaching the server; checked below
				case <-release: // the test ended
				case <-time.After(wait):
				}
			}

			if r := await(t, send(tr, "GET", "")); r.err != nil {
				t.Fatalf("warm-up request: %v", r.err)
			}
			if tc.byCall {
				tr.CloseIdleConnections()
			}
			select {
			case <-hookDone:
			case <-time.After(wait):
				t.Fatal("the idle connection was never closed")
			}
			select {
			case <-idle.Load().readerDone:
			case <-time.After(wait):
				t.Fatal("the idle connection chosen for closing stayed open")
			}
			releaseOnce.Do(func() { close(release) })
			select {
			case <-reqDone:
			case <-time.After(wait):
				t.Fatal("the request racing the idle close never ended")
			}
			r := got
			if r.err != nil {
				t.Fatalf("request racing the idle close failed: %v", r.err)
			}
			if r.resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", r.resp.StatusCode)
			}
			if n := dials.Load(); n != 2 {
				t.Fatalf("%d dials, want 2: the request goes on a new connection", n)
			}
		})
	}
}
