package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// A Content-Length body of at least cluster's splice threshold, with no
// body filter, between plain TCP connections goes from socket to socket
// in the kernel: it arrives byte for byte, the upstream connection goes
// back to the pool for the next request, and the access log still tells
// an upstream that broke mid-body (UPE, the bytes that went) from a whole
// answer.
func TestH1SplicedDownload(t *testing.T) {
	const size = 3<<20 + 12345
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	okAddr := bodyUpstream(t, func(c net.Conn) {
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(body)
		// Keep-alive: a second request on this connection gets the same.
		buf := make([]byte, 4096)
		if n, err := c.Read(buf); err == nil && bytes.HasPrefix(buf[:n], []byte("GET ")) {
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			_, _ = c.Write(body)
		}
	})
	const broken = 600000
	brokenAddr := bodyUpstream(t, func(c net.Conn) {
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(body[:broken])
	})
	path := t.TempDir() + "/access.log"
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [path, status, response_flags, bytes_sent]}\n", 1)
	cfg = strings.Replace(cfg, "          - match: {prefix: /}\n", "          - match: {prefix: /broken}\n            route: {cluster: broken}\n          - match: {prefix: /}\n", 1)
	cfg += "  - name: broken\n    endpoints: [{address: \"{{broken}}\"}]\n"
	p, url := startProxy(t, cfg, map[string]string{"up": okAddr, "broken": brokenAddr})
	for i := 0; i < 2; i++ {
		resp, _ := streamGet(t, url, "/whole")
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("request %d: %d, %d bytes (want %d, equal %v), %v", i, resp.StatusCode, len(got), size, bytes.Equal(got, body), err)
		}
	}
	if n, ok := metricValue(t, p, "weft_upstream_connections_opened_total", "cluster", "up"); !ok || n != 1 {
		t.Errorf("%v upstream connections opened for two requests (counted %t), want 1 (reused)", n, ok)
	}
	resp, _ := streamGet(t, url, "/broken")
	if got, _ := io.Copy(io.Discard, resp.Body); got != broken {
		t.Errorf("broken answer: %d bytes reached the client, want %d", got, broken)
	}
	var log string
	eventually(t, 10*time.Second, "three access log lines", func() bool {
		b, _ := os.ReadFile(path)
		log = string(b)
		return strings.Count(log, "\n") >= 3
	})
	for _, want := range []string{
		fmt.Sprintf(`"path":"/whole","status":200,"response_flags":"-","bytes_sent":%d`, size),
		fmt.Sprintf(`"path":"/broken","status":200,"response_flags":"UPE","bytes_sent":%d`, broken),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %s in\n%s", want, log)
		}
	}
}
