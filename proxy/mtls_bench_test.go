package proxy

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// benchHop measures requests/s through client sidecar → server sidecar →
// app over keep-alive connections, with the sidecar-to-sidecar hop in the
// given mode ("strict": mTLS; "disabled": plaintext).
func benchHop(b *testing.B, mode string) {
	m := newCA(b, time.Hour)
	srvSrc := rotatingIdentity(b, m, ordersID, nil)
	cliSrc := rotatingIdentity(b, m, webID, nil)
	srv := startProxyWith(b, srvSrc, serverSidecar, map[string]string{"mode": mode, "app": appServer(b), "log": "/dev/null"})
	clientCfg := clientSidecar
	if mode == "disabled" {
		clientCfg = clientSidecar[:len(clientSidecar)-len("  tls: {server_ids: [\"{{server_id}}\"]}\n")]
		// The plaintext hop has no peer principal: allow by path.
	}
	cli := startProxyWith(b, cliSrc, clientCfg, map[string]string{"orders": srv.ListenerAddr("inbound").String(), "server_id": ordersID})
	url := "http://" + cli.ListenerAddr("outbound").String() + "/healthz"
	c := &fasthttp.HostClient{Addr: cli.ListenerAddr("outbound").String(), MaxConns: 64}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI(url)
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("status %d: %v", resp.StatusCode(), err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	c.CloseIdleConnections()
}

// BenchmarkHopPlainKeepAlive is the plaintext baseline of the sidecar hop.
func BenchmarkHopPlainKeepAlive(b *testing.B) { benchHop(b, "disabled") }

// BenchmarkHopMTLSKeepAlive is the same hop over keep-alive mTLS.
func BenchmarkHopMTLSKeepAlive(b *testing.B) { benchHop(b, "strict") }

// benchHandshake measures new mTLS connections per second to a strict
// listener (TLS 1.3, ECDSA P-256): full handshakes, or resumed ones from
// the client config's session cache.
func benchHandshake(b *testing.B, resume bool) {
	m := newCA(b, time.Hour)
	srv := startProxyWith(b, rotatingIdentity(b, m, ordersID, nil), serverSidecar, map[string]string{"mode": "strict", "app": appServer(b), "log": "/dev/null"})
	addr := srv.ListenerAddr("inbound").String()
	cfg := rotatingIdentity(b, m, webID, nil).ClientConfig(tls.VersionTLS12, []string{ordersID})
	if !resume {
		cfg.ClientSessionCache = nil
	}
	req := []byte("GET /healthz HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4096)
	resumed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conn := tls.Client(raw, cfg)
		// A request per connection: TLS 1.3 tickets arrive after the
		// handshake, with the first server data.
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		if conn.ConnectionState().DidResume {
			resumed++
		}
		conn.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
	if resume && b.N > 10 && resumed < b.N/2 {
		b.Fatalf("only %d of %d handshakes resumed", resumed, b.N)
	}
	if !resume && resumed > 0 {
		b.Fatalf("%d handshakes resumed without a session cache", resumed)
	}
}

// BenchmarkHandshakeFull: new mTLS connections, full handshakes.
func BenchmarkHandshakeFull(b *testing.B) { benchHandshake(b, false) }

// BenchmarkHandshakeResumed: new mTLS connections resuming a session.
func BenchmarkHandshakeResumed(b *testing.B) { benchHandshake(b, true) }

// BenchmarkHandshakePlainConn is the plaintext baseline: a new TCP
// connection per request.
func BenchmarkHandshakePlainConn(b *testing.B) {
	m := newCA(b, time.Hour)
	srv := startProxyWith(b, rotatingIdentity(b, m, ordersID, nil), serverSidecar, map[string]string{"mode": "disabled", "app": appServer(b), "log": "/dev/null"})
	addr := srv.ListenerAddr("inbound").String()
	req := []byte("GET /healthz HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}
