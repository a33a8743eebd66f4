package listener

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

func start(t *testing.T, lim config.Limits) *Listener {
	t.Helper()
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Limits: lim, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("ok")
	}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return l
}

func send(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = c.Write([]byte(raw))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLimitsAndGuard(t *testing.T) {
	l := start(t, config.Limits{MaxHeaderBytes: 2048, MaxBodyBytes: 16})
	addr := l.Addr().String()
	cases := []struct {
		name, raw string
		want      int
	}{
		{"fine", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200},
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 4000) + "\r\n\r\n", 431},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"te case-insensitive", "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\nTRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bad line", "NOT A REQUEST\r\n\r\n", 400},
	}
	for _, c := range cases {
		if got := send(t, addr, c.raw); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
}

// Shutdown before Serve must not leave a Serve that accepts forever.
func TestShutdownBeforeServe(t *testing.T) {
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Handler: func(*fasthttp.RequestCtx) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.Shutdown(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Serve() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve after Shutdown did not return")
	}
}

func TestHasHeaderLine(t *testing.T) {
	raw := []byte("Host: a\r\nX-Transfer-Encoding: x\r\nContent-Length: 1\r\n\r\n")
	if hasHeaderLine(raw, "transfer-encoding") {
		t.Error("matched a header that only ends with the name")
	}
	if !hasHeaderLine([]byte("Transfer-Encoding: chunked\r\n"), "transfer-encoding") {
		t.Error("missed the header")
	}
}
