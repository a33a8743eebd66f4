package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// readRequest consumes one request's head.
func readRequest(conn net.Conn) {
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			return
		}
	}
}

func TestDoClassifiesFailures(t *testing.T) {
	tests := []struct {
		name     string
		addr     func(t *testing.T) string
		deadline time.Duration
		want     FailureKind
	}{
		{"closed port", func(t *testing.T) string { return closedAddr(t) }, time.Second, ConnectFailure},
		{"closed mid-response", func(t *testing.T) string {
			return testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it")
			})
		}, 2 * time.Second, Reset},
		{"closed before the first byte", func(t *testing.T) string {
			return testserver.ServeTCP(t, func(c net.Conn) { readRequest(c) })
		}, 2 * time.Second, Reset},
		{"closed mid-headers", func(t *testing.T) string {
			return testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
			})
		}, 2 * time.Second, Reset},
		{"reset by peer", func(t *testing.T) string {
			return testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
			})
		}, 2 * time.Second, Reset},
		{"broken chunked body", func(t *testing.T) string {
			return testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort")
			})
		}, 2 * time.Second, Reset},
		{"slow upstream", func(t *testing.T) string {
			addr, _ := blockingServer(t)
			return addr
		}, 50 * time.Millisecond, Timeout},
		{"garbage", func(t *testing.T) string {
			return testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
			})
		}, 2 * time.Second, Other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t, config.Cluster{Name: "do", Endpoints: static(tt.addr(t))}, Options{})
			e := c.Pick(0, false, nil)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("/x")
			req.Header.SetHost("svc")
			err := e.Do(req, resp, time.Now().Add(tt.deadline))
			if err == nil {
				t.Fatalf("Do succeeded: %d", resp.StatusCode())
			}
			if got := Classify(err); got != tt.want {
				t.Fatalf("Classify(%v [%T]) = %v, want %v", err, err, got, tt.want)
			}
			if e.Active() != 0 || e.total.Load() != 1 {
				t.Fatalf("active %d total %d after one failed request", e.Active(), e.total.Load())
			}
		})
	}
}

func TestDoForwardsOverKeepAlive(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]int{}
	addr := serve(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		remotes[ctx.RemoteAddr().String()]++
		mu.Unlock()
		fmt.Fprintf(ctx, "%s %s host=%s ua=%q X-Case=%s", ctx.Method(), ctx.RequestURI(), ctx.Host(),
			ctx.Request.Header.Peek("User-Agent"), ctx.Request.Header.Peek("x-CaSe"))
	})
	c := start(t, config.Cluster{Name: "ka", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for range 20 {
		req.Reset()
		req.Header.SetMethod("POST")
		req.SetRequestURI("/a//b?q=1")
		req.Header.SetHost("api.mesh")
		req.Header.Set("x-CaSe", "v")
		req.SetBodyString("body")
		if err := e.Do(req, resp, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	want := `POST /a//b?q=1 host=api.mesh ua="" X-Case=v`
	if string(resp.Body()) != want {
		t.Fatalf("upstream saw %q, want %q", resp.Body(), want)
	}
	if len(remotes) != 1 || c.Stats().ConnectionsOpened.Load() != 1 || e.Conns() != 1 {
		t.Fatalf("20 sequential requests used %d connections (opened %d)", len(remotes), c.Stats().ConnectionsOpened.Load())
	}
	if st := c.Status().Endpoints[0]; st.Total != 20 || st.Active != 0 || st.Conns != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestClassify(t *testing.T) {
	timeoutErr := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		err  error
		want FailureKind
	}{
		{nil, Other},
		{errors.New("boom"), Other},
		{&DialError{Addr: "x", Err: syscall.ECONNREFUSED}, ConnectFailure},
		{&DialError{Addr: "x", Err: timeoutErr}, ConnectFailure},
		{fasthttp.ErrDialTimeout, ConnectFailure},
		{fasthttp.ErrTimeout, Timeout},
		{timeoutErr, Timeout},
		{context.DeadlineExceeded, Timeout},
		{fasthttp.ErrConnectionClosed, Reset},
		{io.EOF, Reset},
		{fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), Reset},
		{&net.OpError{Op: "read", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}, Reset},
		{fmt.Errorf("x: %w", ErrOverflow), Overflow},
		{fasthttp.ErrNoFreeConns, Overflow},
		{errors.Join(errors.New("a"), io.EOF), Reset},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
