package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const networkFilterConfig = `
filters:
  - name: net
    module: {path: "{{network}}"}
    pool_size: 1
  - name: lenient
    module: {path: "{{network}}"}
    pool_size: 1
    failure_policy: fail_open
    isolate_vm: true
listeners:
  - name: tcp
    address: 127.0.0.1:0
    protocol: tcp
    filters: [net]
    tcp: {cluster: echo, idle_timeout: 30s}
  - name: tcp-short
    address: 127.0.0.1:0
    protocol: tcp
    filters: [net]
    tcp: {cluster: echo, idle_timeout: 200ms}
  - name: tcp-open
    address: 127.0.0.1:0
    protocol: tcp
    filters: [lenient]
    tcp: {cluster: echo, idle_timeout: 30s}
clusters:
  - name: echo
    endpoints:
      - address: "{{echo}}"
        metadata: {filter_metadata: {host: {zone: z1}}}
`

// startTCPEcho serves a line-agnostic echo (bytes back as they come; EOF
// in, EOF out) until the test ends.
func startTCPEcho(t *testing.T) string {
	t.Helper()
	return testserver.ServeTCP(t, func(c net.Conn) {
		if _, err := io.Copy(c, c); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	})
}

// A Wasm network filter on a tcp listener sees and rewrites the bytes both
// ways (downstream upper-cased, upstream PING → PONG, the upstream.address
// property and the endpoint's upstream_host_metadata), holds bytes back on
// Pause until more arrive, closes the connection with close_stream, and
// hears both close callbacks and the end of every connection. The guest is
// written with the Go SDK and in C, held to the same assertions.
func TestWasmNetworkFilterOnTCPListener(t *testing.T) {
	for _, lang := range guestLanguages {
		t.Run(lang, func(t *testing.T) {
			echo := startTCPEcho(t)
			p, _ := startProxy(t, networkFilterConfig, map[string]string{"echo": echo, "network": guestFileIn(t, t.TempDir(), lang, "network")})
			addr := p.ListenerAddr("tcp").String()

			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			line := func(send ...string) string {
				t.Helper()
				for _, s := range send {
					if _, err := io.WriteString(c, s); err != nil {
						t.Fatal(err)
					}
				}
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("read after %q: %v", send, err)
				}
				return l
			}
			if got := line("ping\n"); got != "PONG\n" {
				t.Errorf("ping: got %q, want PONG (upper-cased down, rewritten up)", got)
			}
			if got := line("addr?\n"); got != "ADDR?@"+echo+"\n" {
				t.Errorf("addr: got %q, want the upstream address %s", got, echo)
			}
			// The endpoint's metadata, as upstream_host_metadata.
			if got := line("zone?\n"); got != "ZONE?@z1\n" {
				t.Errorf("zone: got %q, want the endpoint's metadata z1", got)
			}
			// "hold:" is held back; it goes with the next bytes, rewritten as one.
			if _, err := io.WriteString(c, "hold:"); err != nil {
				t.Fatal(err)
			}
			if got := line("then\n"); got != "HOLD:THEN\n" {
				t.Errorf("held: got %q", got)
			}
			// Half-close: the echo's EOF comes back; both close callbacks run.
			_ = c.(*net.TCPConn).CloseWrite()
			if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
				t.Errorf("after half-close: %q, %v", rest, err)
			}

			// A connection the guest closes.
			c2, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			_ = c2.SetDeadline(time.Now().Add(20 * time.Second))
			_, _ = io.WriteString(c2, "close-me\n")
			if b, err := io.ReadAll(c2); len(b) != 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
				t.Errorf("close-me: read %q, %v; want the connection closed", b, err)
			}

			for _, name := range []string{"net_connections_done", "net_downstream_closes", "net_upstream_closes"} {
				eventually(t, 10*time.Second, name+" = 2", func() bool {
					n, _ := metricValue(t, p, "weft_wasm_guest_counter_total", "plugin", "net", "name", name)
					return n == 2
				})
			}
			if n, _ := metricValue(t, p, "weft_tcp_connections_refused_total", "listener", "tcp", "reason", "network_filter"); n != 0 {
				t.Errorf("refused by the filter: %v", n)
			}
		})
	}
}

// A network filter that fails follows its policy (fail_closed closes the
// connection, fail_open passes the bytes through untouched), and one that
// holds bytes back for good is ended by the listener's idle timeout.
func TestWasmNetworkFilterFailuresAndPauses(t *testing.T) {
	for _, lang := range guestLanguages {
		t.Run(lang, func(t *testing.T) {
			echo := startTCPEcho(t)
			p, _ := startProxy(t, networkFilterConfig, map[string]string{"echo": echo, "network": guestFileIn(t, t.TempDir(), lang, "network")})
			dial := func(listener string) net.Conn {
				t.Helper()
				c, err := net.DialTimeout("tcp", p.ListenerAddr(listener).String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				return c
			}

			closed := dial("tcp")
			_, _ = io.WriteString(closed, "panic\n")
			if b, _ := io.ReadAll(closed); len(b) != 0 {
				t.Errorf("fail_closed trap: read %q, want the connection closed", b)
			}

			open := dial("tcp-open")
			r := bufio.NewReader(open)
			_, _ = io.WriteString(open, "panic\n")
			if l, err := r.ReadString('\n'); err != nil || l != "panic\n" {
				t.Errorf("fail_open trap: %q, %v; want the bytes through untouched", l, err)
			}
			_, _ = io.WriteString(open, "ping\n")
			if l, err := r.ReadString('\n'); err != nil || l != "ping\n" {
				t.Errorf("fail_open after the trap: %q, %v; want the filter skipped", l, err)
			}

			held := dial("tcp-short")
			_, _ = io.WriteString(held, "wait:")
			if b, _ := io.ReadAll(held); len(b) != 0 {
				t.Errorf("held bytes came out: %q", b)
			}
			for _, w := range []struct{ plugin, event string }{{"net", "trap"}, {"net", "fail_closed"}, {"lenient", "fail_open"}} {
				if n, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", w.plugin, "event", w.event); n < 1 {
					t.Errorf("%s %s = %v, want ≥ 1", w.plugin, w.event, n)
				}
			}
		})
	}
}
