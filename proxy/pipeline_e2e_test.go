package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// A client's next request can come while the proxy waits for the upstream's
// answer to the one before (pipelining, RFC 9112 §9.3.2), in a segment of
// its own. The netpoller takes the event of its arrival while the
// connection's goroutine is parked on the upstream, and a read resets the
// descriptor's readiness before it begins, so the read for the next request
// must try the socket first: one that waited first would wait for bytes
// that already came, until the idle timeout (sockio's readiness tests show
// the same on bare sockets). The client's deadline bounds the wait; nothing
// here is timed.
func TestPipelinedRequestArrivesWhileUpstreamAnswers(t *testing.T) {
	up := testserver.Start(t, "up")
	release := up.Hold(t)
	_, url := startProxy(t, plainConfig, map[string]string{"up": up.Addr})
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	send := func(path string) {
		t.Helper()
		if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	send("/1")
	eventually(t, 20*time.Second, "the first request at the upstream", func() bool { return up.Hits.Load() == 1 })
	send("/2") // the proxy's goroutine is waiting for the upstream's answer
	release()
	br := bufio.NewReader(conn)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v (the pipelined request waited for bytes that had come)", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "up" {
			t.Fatalf("response %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
	if got := up.Paths(); !slices.Equal(got, []string{"/1", "/2"}) {
		t.Fatalf("upstream saw %v, want [/1 /2]", got)
	}
}
