package testserver

import (
	"net"
	"net/http"
	"sync"
	"testing"
)

// ServeTCP accepts TCP connections on 127.0.0.1:0 and hands each to serve,
// then closes it; it returns the address. It stops when the test ends:
// accepting ends, the connections still open are closed (a handler reading
// a connection the client left open, after a failure, does not hold the
// test up), and every serve has returned.
func ServeTCP(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stopped := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if stopped {
				mu.Unlock()
				_ = conn.Close()
				return
			}
			conns[conn] = struct{}{}
			wg.Add(1) // under mu, so never after the cleanup's Wait began
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, conn)
					mu.Unlock()
					_ = conn.Close()
				}()
				serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		stopped = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// ServeHTTP serves srv on ln until the test ends, then closes it and
// waits for its Serve to return.
func ServeHTTP(t testing.TB, srv *http.Server, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}
