package cluster

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// An upstream that answers a streamed upload before reading it (a 401,
// then it closes) has its answer read, not the failed write's error: for
// a body of known length and a chunked one. The connection is not reused.
func TestDoStreamBodyEarlyAnswer(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
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
