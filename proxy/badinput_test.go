package proxy

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const plainConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    limits: {max_header_bytes: 4096, max_body_bytes: 1024}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// rawRequest writes text to the proxy and reads one response.
func rawRequest(t *testing.T, addr, text string) (int, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(text)); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestMalformedRequestsNeverReachUpstream(t *testing.T) {
	up := testserver.Start(t, "up")
	_, url := startProxy(t, plainConfig, map[string]string{"up": up.Addr})
	addr := strings.TrimPrefix(url, "http://")
	cases := []struct{ name, req string }{
		{"bad request line", "GARBAGE\r\n\r\n"},
		{"bad version", "GET / HTTP/9.9x\r\nHost: a\r\n\r\n"},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n"},
		{"content-length and chunked", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"two content-lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"body over limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("b", 5000)},
		{"bad content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := up.Hits.Load()
			st, err := rawRequest(t, addr, c.req)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if st < 400 || st > 499 {
				t.Fatalf("status %d, want 4xx", st)
			}
			if up.Hits.Load() != before {
				t.Fatal("a malformed request reached the upstream")
			}
		})
	}
	// The proxy still works.
	if st, err := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil || st != 200 {
		t.Fatalf("after bad input: %d %v", st, err)
	}
}

// An absolute-form target names the host (RFC 9112 §3.2.2): routing and
// the upstream must both use it, whatever the Host header says.
func TestAbsoluteFormTargetDecidesTheHost(t *testing.T) {
	up := testserver.Start(t, "up")
	_, url := startProxy(t, `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: admin
        domains: [admin.example]
        routes:
          - match: {prefix: /}
            direct_response: {status: 403, body: "admin is closed"}
      - name: public
        domains: [public.example]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`, map[string]string{"up": up.Addr})
	st, err := rawRequest(t, strings.TrimPrefix(url, "http://"), "GET http://admin.example/secret HTTP/1.1\r\nHost: public.example\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if st != 403 || up.Hits.Load() != 0 {
		t.Fatalf("absolute-form admin.example with Host public.example: %d, upstream hits %d", st, up.Hits.Load())
	}
}
