package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

func streamReq() (*fasthttp.Request, *fasthttp.Response) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("/")
	req.Header.SetHost("svc")
	return req, resp
}

// A body larger than the read buffer streams, and the connection is reused
// once it was read whole; a small one comes whole with the headers.
func TestDoStreamBodies(t *testing.T) {
	big := strings.Repeat("b", 200<<10)
	addr := serve(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/big":
			ctx.SetBodyString(big)
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for i := 0; i < 3; i++ {
					fmt.Fprintf(w, "part %d;", i)
					_ = w.Flush()
				}
			})
		default:
			ctx.SetBodyString("ok")
		}
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, tc := range []struct{ path, want string }{{"/small", "ok"}, {"/big", big}, {"/chunked", "part 0;part 1;part 2;"}, {"/big", big}} {
		req, resp := streamReq()
		req.SetRequestURI(tc.path)
		body, err := e.DoStream(req, resp, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := string(resp.Body())
		if body != nil {
			if tc.path == "/big" && body.ContentLength() != len(big) {
				t.Fatalf("%s: ContentLength %d", tc.path, body.ContentLength())
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			_ = body.Close()
			got = string(b)
		}
		if got != tc.want || e.Active() != 0 {
			t.Fatalf("%s: %d bytes (want %d), active %d", tc.path, len(got), len(tc.want), e.Active())
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}

// A body closed before its end closes its connection (it is at an unknown
// point of the stream), and frees its max_connections slot.
func TestDoStreamCloseEarlyClosesConn(t *testing.T) {
	addr := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(strings.Repeat("x", 1<<20)) })
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	body, err := e.DoStream(req, resp, time.Now().Add(5*time.Second))
	if err != nil || body == nil {
		t.Fatalf("body %v, %v", body, err)
	}
	if _, err := body.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	_ = body.Close()
	if e.Conns() != 0 || e.Active() != 0 || c.breakers.connections.Load() != 0 {
		t.Fatalf("conns %d, active %d, slots %d", e.Conns(), e.Active(), c.breakers.connections.Load())
	}
}

// Chunk framing errors are errors, not a silently short body.
func TestDoStreamBadChunks(t *testing.T) {
	for _, tail := range []string{"zz\r\nhello\r\n", "5\r\nhelloXX", "5\r\nhel", "ffffffffffffffff\r\n"} {
		// The bad chunk comes once the client has the headers: it is
		// read from the stream, not with them.
		proceed := make(chan struct{})
		addr := testserver.ServeTCP(t, func(conn net.Conn) {
			readRequest(conn)
			_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			select {
			case <-proceed:
			case <-time.After(30 * time.Second):
				return
			}
			_, _ = io.WriteString(conn, tail)
		})
		c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		req, resp := streamReq()
		body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		close(proceed)
		if err != nil || body == nil {
			t.Fatalf("%q: body %v, %v", tail, body, err)
		}
		if b, err := io.ReadAll(body); err == nil {
			t.Fatalf("%q: read %q without an error", tail, b)
		}
		_ = body.Close()
		if e.Conns() != 0 {
			t.Fatalf("%q: a broken connection went back to the pool", tail)
		}
	}
}

// An idempotent request that meets a pooled connection the upstream had
// closed goes again on a new one, as with Do.
func TestDoStreamRetriesStaleConn(t *testing.T) {
	closed := make(chan struct{}, 2)
	addr := testserver.ServeTCP(t, func(conn net.Conn) {
		readRequest(conn)
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// then close: the pooled connection is stale
		_ = conn.Close()
		closed <- struct{}{}
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for i := 0; i < 2; i++ {
		req, resp := streamReq()
		body, err := e.DoStream(req, resp, time.Now().Add(5*time.Second))
		if err != nil || body != nil || string(resp.Body()) != "ok" {
			t.Fatalf("try %d: %v, body %v, %q", i, err, body, resp.Body())
		}
		select { // the upstream has closed the connection now pooled
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream never closed the connection")
		}
	}
}

func TestDoStreamDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	big := strings.Repeat("b", 100<<10)
	addr := serve(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/big" {
			ctx.SetBodyString(big)
			return
		}
		ctx.SetBodyString("ok")
	})
	c := start(t, config.Cluster{Name: "d", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	buf := make([]byte, 32<<10)
	for _, path := range []string{"/", "/big"} {
		req, resp := streamReq()
		req.SetRequestURI(path)
		deadline := time.Now().Add(10 * time.Second)
		allocs := testing.AllocsPerRun(200, func() {
			body, err := e.DoStream(req, resp, deadline)
			if err != nil {
				t.Fatal(err)
			}
			if body != nil {
				for {
					if _, err := body.Read(buf); err != nil {
						if err != io.EOF {
							t.Fatal(err)
						}
						break
					}
				}
				_ = body.Close()
			}
		})
		// Counted process-wide: the upstream's fasthttp server is included
		// (it copies a 100 KiB body into a pooled buffer that may grow).
		if allocs >= 1 {
			t.Fatalf("%s: DoStream allocates %v times per request", path, allocs)
		}
	}
}

// A body that ends after its cluster was closed (replaced by a reload)
// closes its connection instead of pooling it where nobody closes it.
func TestDoStreamAfterClusterClosed(t *testing.T) {
	addr := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(strings.Repeat("x", 1<<20)) })
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	body, err := e.DoStream(req, resp, time.Now().Add(5*time.Second))
	if err != nil || body == nil {
		t.Fatalf("body %v, %v", body, err)
	}
	c.Close()
	if _, err := io.Copy(io.Discard, body); err != nil {
		t.Fatal(err)
	}
	_ = body.Close()
	if e.Conns() != 0 {
		t.Fatalf("%d connections left open", e.Conns())
	}
}
