package wasm

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// DispatchStatus names real failures of a real client: a refused
// connection, a server that never answers, one that closes mid-answer.
func TestDispatchStatusOfRealFailures(t *testing.T) {
	dead := testserver.RefusedAddr(t)

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closer, err := net.Listen("tcp", "127.0.0.1:0") // reads, then closes
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	done := make(chan struct{})
	defer close(done)
	serve := func(ln net.Listener, handle func(net.Conn)) {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go handle(c)
			}
		}()
	}
	serve(silent, func(c net.Conn) { <-done; c.Close() })
	serve(closer, func(c net.Conn) { c.Read(make([]byte, 4096)); c.Close() })

	do := func(addr string, timeout time.Duration) error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/")
		hc := &fasthttp.HostClient{Addr: addr, MaxIdemponentCallAttempts: 1}
		return hc.DoTimeout(req, resp, timeout)
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", do(dead, 5*time.Second), "connect_failure"},
		{"silent", do(silent.Addr().String(), 200*time.Millisecond), "timeout"},
		{"closed", do(closer.Addr().String(), 5*time.Second), "reset"},
		{"unknown cluster", fmt.Errorf("%w %q", ErrUnknownCluster, "x"), "no_cluster"},
		{"no endpoint", fmt.Errorf("cluster x: %w", ErrNoHealthyEndpoint), "no_healthy_endpoint"},
		{"other", errors.New("something else"), "failure"},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if got := DispatchStatus(c.err); got != c.want {
			t.Errorf("%s: DispatchStatus(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
}
