package cluster

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Do reads the whole answer on doH1 (whole): a length, chunks and their
// trailers, a body that ends at the upstream's close, none for HEAD and
// 204, and refuses one over maxResponseBodyBytes; the connection goes back
// to the pool only when the answer allows it.
func TestDoWholeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, method, answer string
		body                 string
		trailer              string // x-t's value after the body
		err                  error
		pooled               bool
	}{
		{"length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", "", nil, true},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: v\r\n\r\n", "abcde", "v", nil, true},
		{"until close", "GET", "HTTP/1.1 200 OK\r\n\r\nhello", "hello", "", nil, false},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "", "", nil, true},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", "", "", nil, true},
		{"over the limit", "GET", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nxx", maxResponseBodyBytes+1), "", "", fasthttp.ErrBodyTooLarge, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, tc.answer)
				if !tc.pooled {
					_ = c.Close()
					return
				}
				_, _ = io.Copy(io.Discard, c) // until the client closes
			})
			c := start(t, config.Cluster{Name: "s", Endpoints: static(addr), IdleTimeout: longIdle}, Options{})
			e := c.Pick(0, false, nil)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod(tc.method)
			req.SetRequestURI("/")
			req.Header.SetHost("upstream.test")
			err := e.Do(req, resp, time.Now().Add(30*time.Second))
			if err != tc.err {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && (string(resp.Body()) != tc.body || string(resp.Header.Peek("x-t")) != tc.trailer) {
				t.Fatalf("body %q, x-t %q; want %q, %q", resp.Body(), resp.Header.Peek("x-t"), tc.body, tc.trailer)
			}
			if idle := e.client.IdleConnsCount(); (idle == 1) != tc.pooled {
				t.Fatalf("%d idle connections, want pooled %v", idle, tc.pooled)
			}
			if e.Active() != 0 {
				t.Fatalf("%d requests still active", e.Active())
			}
		})
	}
}
