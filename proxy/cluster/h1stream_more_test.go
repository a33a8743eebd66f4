package cluster

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// An upstream that answers a streamed upload before reading it (a 401,
// then it closes) has its answer read, not the failed write's error: for
// a body of known length and a chunked one. The connection is not reused.
func TestDoStreamBodyEarlyAnswer(t *testing.T) {
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied")
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	const size = 16 << 20 // more than the sockets hold: the write fails
	for _, n := range []int{size, -1} {
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		body, err := e.DoStreamBody(req, strings.NewReader(strings.Repeat("u", size)), n, resp, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("size %d: %v, want the early answer", n, err)
		}
		got := string(resp.Body())
		if body != nil {
			b, _ := io.ReadAll(body)
			_ = body.Close()
			got = string(b)
		}
		if resp.StatusCode() != 401 || got != "denied" {
			t.Fatalf("size %d: %d %q, want 401 denied", n, resp.StatusCode(), got)
		}
	}
	eventually(t, "no connection left open", func() bool { return e.Conns() == 0 && e.Active() == 0 })
}

// An answer with no body (Content-Length 0, 204, 304, a HEAD's) is whole
// with its headers: DoStream returns no body to read and frees the
// connection at once, and the next request reuses it.
func TestDoStreamEmptyBodiesFreeTheConnection(t *testing.T) {
	addr := serve(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/204":
			ctx.SetStatusCode(fasthttp.StatusNoContent)
		case "/304":
			ctx.SetStatusCode(fasthttp.StatusNotModified)
		case "/head":
			ctx.SetBodyString("a body HEAD does not get")
		}
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, tc := range []struct{ method, path string }{{"GET", "/empty"}, {"GET", "/204"}, {"GET", "/304"}, {"HEAD", "/head"}, {"GET", "/empty"}} {
		req, resp := streamReq()
		req.Header.SetMethod(tc.method)
		req.SetRequestURI(tc.path)
		body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		if body != nil || len(resp.Body()) != 0 || e.Active() != 0 {
			t.Fatalf("%s %s: a body to stream (%v), %d bytes, %d active: want none, and the connection free", tc.method, tc.path, body != nil, len(resp.Body()), e.Active())
		}
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}

// A body that ends when the upstream closes (no Content-Length, not
// chunked) leaves no connection in the pool: a POST after it, which is
// not sent twice, gets a new connection and its answer.
func TestDoStreamBodyUntilCloseIsNotReused(t *testing.T) {
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		for l := line; l != "\r\n" && l != ""; {
			l, _ = br.ReadString('\n')
		}
		if strings.HasPrefix(line, "POST ") {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npost")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
		_, _ = io.WriteString(c, strings.Repeat("u", 100<<10)) // more than comes with the headers
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if err != nil || body == nil {
		t.Fatalf("%v, body %v", err, body != nil)
	}
	b, err := io.ReadAll(body)
	_ = body.Close()
	if err != nil || len(b) != 100<<10 {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	req, resp = streamReq()
	req.Header.SetMethod("POST")
	body, err = e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if err != nil || body != nil || string(resp.Body()) != "post" {
		t.Fatalf("the POST after a body read to the close: %v, %q", err, resp.Body())
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 2 {
		t.Fatalf("%d connections opened, want 2", n)
	}
}

// A GET whose answer cannot be parsed is not sent again: only a pooled
// connection the upstream had closed (nothing read back) is retried.
func TestDoStreamBadAnswerNotRetried(t *testing.T) {
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		_, _ = io.WriteString(c, "HTTP/1.1 two hundred\r\n\r\n")
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	if body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second)); err == nil || body != nil {
		t.Fatalf("a malformed status line: %v, body %v", err, body != nil)
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 (no retry)", n)
	}
}

// A two-byte body that comes after its headers streams, and the
// connection is reused once it was read.
func TestDoStreamShortBodyAfterHeadersKeepsConnection(t *testing.T) {
	proceed := make(chan struct{}, 2)
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			for err == nil && l != "\r\n" {
				l, err = br.ReadString('\n')
			}
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
			select {
			case <-proceed: // the client has the headers
			case <-time.After(30 * time.Second):
				return
			}
			_, _ = io.WriteString(c, "ok")
		}
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for i := 0; i < 2; i++ {
		req, resp := streamReq()
		body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		proceed <- struct{}{}
		if err != nil || body == nil {
			t.Fatalf("request %d: %v, body %v", i, err, body != nil)
		}
		b, err := io.ReadAll(body)
		_ = body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}

// A body the upstream stops sending is cut at the cluster's idle_timeout:
// the read fails instead of waiting for ever.
func TestDoStreamStalledBodyCutAtIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		<-release
	})
	t.Cleanup(func() { close(release) }) // before the server's cleanup waits for it
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr), IdleTimeout: config.Duration(300 * time.Millisecond)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if err != nil || body == nil {
		t.Fatalf("%v, body %v", err, body != nil)
	}
	t.Cleanup(func() { _ = body.Close() })
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(body)
		read <- err
	}()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a stalled body read to its end")
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("a stalled body was not cut at the idle timeout")
	}
}
