package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// A pooled upstream connection the upstream closed while it sat idle, or
// as the next request reached it, through a whole weft listener with the
// default retry policy and outlier detection (cluster/pooledconn.go).

// closingUpstream answers 200 "ok" (keep-alive) on every connection but
// its first, which answers one request and then ends by mode: "idle FIN"
// and "idle RST" close it when the test says so (closeNow), "FIN on the
// request" reads the next request and closes without an answer, "RST mid
// body" reads the next request's head and part bytes of its body and
// resets. ended gets the first connection once it is closed.
type closingUpstream struct {
	addr     string
	closeNow chan struct{}
	ended    chan struct{}
	conns    atomic.Int32
}

func startClosingUpstream(t *testing.T, mode string, part int64) *closingUpstream {
	t.Helper()
	u := &closingUpstream{closeNow: make(chan struct{}, 1), ended: make(chan struct{}, 1)}
	stop := make(chan struct{})
	u.addr = testserver.ServeTCP(t, func(c net.Conn) { u.serve(c, u.conns.Add(1) == 1, mode, part, stop) })
	t.Cleanup(func() { close(stop) }) // runs first: cleanups run last-in first-out
	return u
}

func (u *closingUpstream) serve(c net.Conn, first bool, mode string, part int64, stop chan struct{}) {
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		cl, err := readRequestHead(br)
		if err != nil {
			return
		}
		if first && n == 1 {
			switch mode {
			case "FIN on the request":
				_, _ = io.CopyN(io.Discard, br, cl)
			case "RST mid body":
				_, _ = io.CopyN(io.Discard, br, part)
				_ = c.(*net.TCPConn).SetLinger(0)
			}
			_ = c.Close()
			u.ended <- struct{}{}
			return
		}
		if _, err := io.CopyN(io.Discard, br, cl); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		if first && n == 0 && strings.HasPrefix(mode, "idle") {
			select {
			case <-u.closeNow:
			case <-stop:
				return
			}
			if mode == "idle RST" {
				_ = c.(*net.TCPConn).SetLinger(0)
			}
			_ = c.Close()
			u.ended <- struct{}{}
			return
		}
	}
}

// readRequestHead reads a request's head and returns its Content-Length.
func readRequestHead(br *bufio.Reader) (int64, error) {
	var cl int64
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if l == "\r\n" {
			return cl, nil
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "content-length") {
			cl, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
}

const pooledConnConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: svc}
clusters:
  - name: svc
    endpoints: [{address: "{{up}}"}]
    idle_timeout: 5s
`

// pooledStats are the cluster's counters that tell how a stale connection
// was met: passed over by the pool's check, or a request sent again; the
// route policy's retries; and the failures outlier detection was fed.
type pooledStats struct{ stale, retried, policyRetries, failures float64 }

func readPooledStats(t *testing.T, p *Proxy) pooledStats {
	t.Helper()
	var s pooledStats
	s.stale, _ = metricValue(t, p, "weft_upstream_pooled_conns_stale_total", "cluster", "svc")
	s.retried, _ = metricValue(t, p, "weft_upstream_pooled_conn_retries_total", "cluster", "svc")
	s.policyRetries, _ = metricValue(t, p, "weft_upstream_retries_total", "cluster", "svc")
	s.failures = float64(p.snap.Load().clusters[0].c.Status().Endpoints[0].Failures)
	return s
}

// A GET through weft on a pooled connection the upstream closed (FIN) or
// reset (RST) while it was idle, or closed as the GET reached it, gets its
// answer from a new connection: no error for the client, no retry of the
// route's policy (no backoff, no budget), nothing fed to outlier
// detection; the pooled-connection counters say what happened.
func TestPooledConnClosedThroughProxy(t *testing.T) {
	for _, mode := range []string{"idle FIN", "idle RST", "FIN on the request"} {
		t.Run(mode, func(t *testing.T) {
			u := startClosingUpstream(t, mode, 0)
			p, url := startProxy(t, pooledConnConfig, map[string]string{"up": u.addr})
			c := &fasthttp.Client{}
			t.Cleanup(c.CloseIdleConnections)
			if st, body, _ := get(t, c, url+"/one"); st != 200 || body != "ok" {
				t.Fatalf("first GET: %d %q", st, body)
			}
			if strings.HasPrefix(mode, "idle") {
				u.closeNow <- struct{}{}
				<-u.ended
			}
			if st, body, _ := get(t, c, url+"/two"); st != 200 || body != "ok" {
				t.Fatalf("GET on the closed connection: %d %q, want 200 ok", st, body)
			}
			s := readPooledStats(t, p)
			if s.policyRetries != 0 || s.failures != 0 {
				t.Fatalf("%v route-policy retries, %v failures fed to outlier detection: want none", s.policyRetries, s.failures)
			}
			if mode == "FIN on the request" && (s.retried != 1 || s.stale != 0) {
				t.Fatalf("%v requests sent again, %v stale connections passed over: want 1, 0", s.retried, s.stale)
			}
			if s.stale+s.retried != 1 {
				t.Fatalf("%v stale connections passed over, %v requests sent again: want one, once", s.stale, s.retried)
			}
			if n := u.conns.Load(); n != 2 {
				t.Fatalf("%d upstream connections, want 2", n)
			}
		})
	}
}

// The same through net/http's transport (an HTTP/2 client to an HTTP/1.1
// cluster): the upstream closes the reused connection as the second GET
// reaches it, the transport sends the GET again on a new connection by
// its own rule, and that is counted as the HTTP/1.1 pool's re-send is
// (weft_upstream_pooled_conn_retries_total), not as a retry of the
// route's policy, and nothing is fed to outlier detection.
func TestPooledConnClosedThroughProxyHTTP2Client(t *testing.T) {
	u := startClosingUpstream(t, "FIN on the request", 0)
	p, url := startProxy(t, pooledConnConfig, map[string]string{"up": u.addr})
	c := h2cClient()
	t.Cleanup(c.CloseIdleConnections)
	for _, path := range []string{"/one", "/two"} {
		resp, err := c.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "ok" || resp.ProtoMajor != 2 {
			t.Fatalf("GET %s: HTTP/%d %d %q %v, want HTTP/2 200 ok", path, resp.ProtoMajor, resp.StatusCode, body, err)
		}
	}
	select {
	case <-u.ended:
	default:
		t.Fatal("the upstream did not close the first connection on the second GET: the test proves nothing")
	}
	s := readPooledStats(t, p)
	if s.retried != 1 || s.policyRetries != 0 || s.failures != 0 {
		t.Fatalf("%v requests sent again, %v route-policy retries, %v failures fed to outlier detection: want 1, 0, 0",
			s.retried, s.policyRetries, s.failures)
	}
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
}

// A POST whose body streams from the client and was partly sent when the
// upstream reset the reused connection is not sent again: the client gets
// the reset's answer (502), and the upstream never sees a second try.
func TestPooledConnPartlySentPostNotRetried(t *testing.T) {
	// Longer than the 8 KiB a listener takes whole with the head: it
	// streams.
	part, rest := strings.Repeat("p", 16<<10), strings.Repeat("r", 16<<10)
	u := startClosingUpstream(t, "RST mid body", int64(len(part)))
	p, url := startProxy(t, pooledConnConfig, map[string]string{"up": u.addr})
	c := &fasthttp.Client{}
	t.Cleanup(c.CloseIdleConnections)
	if st, body, _ := get(t, c, url+"/one"); st != 200 || body != "ok" {
		t.Fatalf("first GET: %d %q", st, body)
	}
	conn, br := upload(t, url, "POST", fmt.Sprintf("Content-Length: %d\r\n", len(part)+len(rest)))
	if _, err := io.WriteString(conn, part); err != nil {
		t.Fatal(err)
	}
	select { // the upstream read the first part, then reset
	case <-u.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the first part of the body never reached the upstream")
	}
	_, _ = io.WriteString(conn, rest)
	status, body := readAnswer(t, br)
	if status != 502 || body != "upstream reset before response complete\n" {
		t.Fatalf("%d %q, want 502 upstream reset", status, body)
	}
	s := readPooledStats(t, p)
	if s.retried != 0 || s.policyRetries != 0 {
		t.Fatalf("%v pooled-connection retries, %v policy retries of a partly sent POST", s.retried, s.policyRetries)
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections, want 1 (the POST not sent again)", n)
	}
}
