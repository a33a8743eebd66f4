package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// echoUpgradeServer answers an Upgrade with 101 and then echoes bytes.
func echoUpgradeServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
					_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
					return
				}
				_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
				_, _ = io.Copy(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestWebSocketUpgradePassThrough(t *testing.T) {
	ws := echoUpgradeServer(t)
	_, url := startProxy(t, plainConfig, map[string]string{"up": ws})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"hello", "over the tunnel"} {
		_, _ = conn.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo: %q %v", buf, err)
		}
	}
}

func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	up := testserver.Start(t, "up")
	p, url := startProxy(t, plainConfig, map[string]string{"up": up.Addr})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the release below (cleanups run last first)
	// The upstream holds the 4 requests until the drain has begun, so they
	// are surely in flight during it (a fixed delay may run out first on a
	// busy machine).
	release := up.Hold(t)
	results := make(chan int, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, _ := get(t, &fasthttp.Client{}, url+"/")
			results <- st
		}()
	}
	eventually(t, 5*time.Second, "requests in flight", func() bool { return up.Hits.Load() == 4 })
	if !p.Ready() {
		t.Fatal("not ready before the drain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()
	// /ready answers 503 while draining, so nothing new is sent here.
	eventually(t, 5*time.Second, "not ready while draining", func() bool { return !p.Ready() })
	release()
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for st := range results {
		if st != 200 {
			t.Fatalf("in-flight request got %d during shutdown", st)
		}
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestAdminEndpoints(t *testing.T) {
	up := testserver.Start(t, "up")
	p, url := startProxy(t, plainConfig, map[string]string{"up": up.Addr})
	a, err := admin.Start("127.0.0.1:0", p, p.Metrics().Registry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	c := &fasthttp.Client{}
	for i := 0; i < 5; i++ {
		get(t, c, url+"/x")
	}
	base := "http://" + a.Addr().String()
	if st, body, _ := get(t, c, base+"/ready"); st != 200 {
		t.Fatalf("/ready: %d %s", st, body)
	}
	st, body, _ := get(t, c, base+"/stats/prometheus")
	if st != 200 || !strings.Contains(body, `weft_requests_total{cluster="up",code_class="2xx",listener="main",route="#0"} 5`) {
		t.Fatalf("/stats/prometheus lacks the request count:\n%s", grepLines(body, "weft_requests_total"))
	}
	for _, m := range []string{"weft_request_duration_seconds_bucket", "weft_active_requests", "weft_upstream_requests_total", "weft_cluster_endpoints_healthy"} {
		if !strings.Contains(body, m) {
			t.Errorf("/stats/prometheus lacks %s", m)
		}
	}
	_, body, _ = get(t, c, base+"/config_dump")
	var dump map[string]any
	if err := json.Unmarshal([]byte(body), &dump); err != nil || dump["version"] != p.Version() {
		t.Fatalf("/config_dump: %v %s", err, body)
	}
	_, body, _ = get(t, c, base+"/clusters")
	if !strings.Contains(body, up.Addr) {
		t.Fatalf("/clusters lacks the endpoint: %s", body)
	}
	if st, _, _ := get(t, c, base+"/debug/pprof/"); st != 200 {
		t.Fatalf("pprof: %d", st)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

const upgradeGuardConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /admin}
            direct_response: {status: 403, body: "no"}
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// rawUpstream answers every connection with handle(conn, reader).
func rawUpstream(t *testing.T, handle func(net.Conn, *bufio.Reader)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c, bufio.NewReader(c)) }()
		}
	}()
	return ln.Addr().String()
}

// An upstream that ignores Upgrade and answers normally must not turn the
// client's connection into a raw tunnel past routing.
func TestRefusedUpgradeKeepsTheConnectionRouted(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body := "upstream saw " + req.URL.Path
			fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
	_, url := startProxy(t, upgradeGuardConfig, map[string]string{"up": up})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	_, _ = conn.Write([]byte("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("refused upgrade: %d, want the upstream's 400", resp.StatusCode)
	}
	_, _ = conn.Write([]byte("GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || string(b) != "no" {
		t.Fatalf("after a refused upgrade /admin got %d %q: the connection bypassed routing", resp.StatusCode, b)
	}
}

// When the upstream closes an upgraded connection, the client sees EOF.
func TestUpgradedConnectionClosesWithUpstream(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nbye"))
	})
	_, url := startProxy(t, upgradeGuardConfig, map[string]string{"up": up})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading until the upstream closed: %v (got %q)", err, rest)
	}
	if string(rest) != "bye" {
		t.Fatalf("after 101: %q", rest)
	}
}
