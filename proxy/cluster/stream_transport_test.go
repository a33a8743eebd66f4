package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// The streaming transport (transport.go): RoundTrip for each protocol and
// TLS, Do and DoStream on HTTP/2 clusters, against net/http servers (h2c
// and TLS with ALPN) on loopback.

// testPKI is a CA and a server certificate for 127.0.0.1 and
// upstream.test, made for the test.
type testPKI struct {
	server *tls.Certificate
	roots  *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "upstream.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"upstream.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{server: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots: x509.NewCertPool()}
	p.roots.AddCert(ca)
	return p
}

// client is the cluster's TLS config: it trusts the test CA.
func (p *testPKI) client() *tls.Config {
	return &tls.Config{RootCAs: p.roots, ServerName: "upstream.test", MinVersion: tls.VersionTLS12}
}

// httpUpstream is a net/http server on loopback: plaintext HTTP/1.1 and
// h2c, or TLS with ALPN offering alpn (no ALPN at all when nil). It counts
// the connections it accepted and closed.
type httpUpstream struct {
	addr           string
	opened, closed atomicCounter
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (a *atomicCounter) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomicCounter) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func startHTTPUpstream(t *testing.T, pki *testPKI, alpn []string, h http.HandlerFunc) *httpUpstream {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &httpUpstream{addr: ln.Addr().String()}
	var p http.Protocols
	p.SetHTTP1(true)
	srv := &http.Server{Handler: h, Protocols: &p, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.opened.add()
		case http.StateClosed, http.StateHijacked:
			u.closed.add()
		}
	}}
	switch {
	case pki != nil && alpn == nil:
		// TLS with no ALPN at all: HTTP/1.1.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*pki.server}})
	case pki != nil:
		p.SetHTTP2(true)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*pki.server}, NextProtos: alpn})
	default:
		p.SetUnencryptedHTTP2(true)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return u
}

// echo answers with what it saw: protocol, TLS, host, the request's
// Connection: close, headers the test asks about, and its body; a trailer
// X-Trailer follows the body.
func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Trailer", "X-Trailer")
	w.Header().Set("X-Upstream", "yes")
	fmt.Fprintf(w, "%s tls=%v host=%s close=%v x-keep=%q keep-alive=%q body=%s req-trailer=%q",
		r.Proto, r.TLS != nil, r.Host, r.Close, r.Header.Get("X-Keep"), r.Header.Get("Keep-Alive"), b, r.Trailer.Get("X-Sum"))
	w.Header().Set("X-Trailer", "done")
}

// protoCase is a cluster protocol, with TLS or not, and what an upstream
// offering every protocol ends up speaking.
type protoCase struct {
	protocol string
	tls      bool
	h2down   bool
	want     string
}

var protoCases = []protoCase{
	{"http1", false, false, "HTTP/1.1"},
	{"http1", false, true, "HTTP/1.1"},
	{"http2", false, false, "HTTP/2.0"},
	{"auto", false, false, "HTTP/1.1"},
	{"auto", false, true, "HTTP/2.0"},
	{"http1", true, false, "HTTP/1.1"},
	{"http2", true, false, "HTTP/2.0"},
	{"auto", true, false, "HTTP/2.0"},
}

func (pc protoCase) String() string {
	return fmt.Sprintf("%s tls=%v h2down=%v", pc.protocol, pc.tls, pc.h2down)
}

// startProtoCluster starts an upstream for pc (TLS offering h2 and
// http/1.1 when pc.tls) and a cluster on it.
func startProtoCluster(t *testing.T, pc protoCase, h http.HandlerFunc, cfg config.Cluster) (*Cluster, *Endpoint, *httpUpstream) {
	t.Helper()
	var pki *testPKI
	var o Options
	if pc.tls {
		pki = newTestPKI(t)
		o.TLS = pki.client()
		cfg.TLS = &config.ClusterTLS{Mode: "mtls"}
	}
	u := startHTTPUpstream(t, pki, []string{"h2", "http/1.1"}, h)
	cfg.Name, cfg.Protocol, cfg.Endpoints = "t", pc.protocol, static(u.addr)
	c := start(t, cfg, o)
	return c, c.Pick(0, false, nil), u
}

func newStreamRequest(t *testing.T, ctx context.Context, method, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ignored.test/path", rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "svc.test"
	return req
}

// RoundTrip speaks what the cluster's protocol, TLS and the downstream's
// protocol call for, reuses its transport and connection, streams the
// answer with its trailers, and counts the request active until the body
// is closed (once, however often Close is called).
func TestRoundTripProtocols(t *testing.T) {
	for _, pc := range protoCases {
		t.Run(pc.String(), func(t *testing.T) {
			c, e, u := startProtoCluster(t, pc, echo, config.Cluster{})
			if got := c.UsesHTTP2(pc.h2down); got != (pc.want == "HTTP/2.0") {
				t.Fatalf("UsesHTTP2(%v) = %v", pc.h2down, got)
			}
			// Surely HTTP/2: not auto over TLS, which ALPN decides.
			if got, want := c.AlwaysHTTP2(pc.h2down), pc.want == "HTTP/2.0" && !(pc.protocol == "auto" && pc.tls); got != want {
				t.Fatalf("AlwaysHTTP2(%v) = %v", pc.h2down, got)
			}
			if c.Protocol() != pc.protocol {
				t.Fatalf("Protocol() = %q", c.Protocol())
			}
			for i := range 2 {
				req := newStreamRequest(t, context.Background(), "POST", "hello")
				req.Header.Set("X-Keep", "kept")
				resp, err := e.RoundTrip(req, pc.h2down)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if e.Active() != 1 {
					t.Fatalf("%d active while the body is open", e.Active())
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				_ = resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("%s tls=%v host=svc.test close=false x-keep=\"kept\" keep-alive=\"\" body=hello req-trailer=\"\"", pc.want, pc.tls)
				if string(b) != want || resp.StatusCode != 200 {
					t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, b, want)
				}
				if resp.Trailer.Get("X-Trailer") != "done" {
					t.Fatalf("trailers %v", resp.Trailer)
				}
				if e.Active() != 0 {
					t.Fatalf("%d active after Close", e.Active())
				}
			}
			if n := u.opened.get(); n != 1 {
				t.Fatalf("%d connections for 2 requests, want 1", n)
			}
		})
	}
}

// A cluster replaced by a reload asks its HTTP/1.1 upstreams to close the
// connection (nobody would close it in the old pool), and closing it
// closes the idle connections of its streaming transports.
func TestRoundTripAfterClusterClosed(t *testing.T) {
	for _, pc := range []protoCase{{"http1", false, true, "HTTP/1.1"}, {"http2", false, true, "HTTP/2.0"}, {"auto", true, false, "HTTP/2.0"}} {
		t.Run(pc.String(), func(t *testing.T) {
			c, e, u := startProtoCluster(t, pc, echo, config.Cluster{})
			req := newStreamRequest(t, context.Background(), "GET", "")
			resp, err := e.RoundTrip(req, pc.h2down)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			c.Close()
			eventually(t, "the idle connection closed", func() bool { return u.closed.get() == 1 })
			if pc.protocol != "http1" {
				return
			}
			resp, err = e.RoundTrip(newStreamRequest(t, context.Background(), "GET", ""), pc.h2down)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.Contains(string(b), "close=true") {
				t.Fatalf("after Close the upstream saw %q, want Connection: close", b)
			}
		})
	}
}

// Failures: a refused connection is a *DialError (ConnectFailure), a
// deadline a fasthttp.ErrTimeout (Timeout), and a TLS upstream that is not
// trusted fails the dial; none leaves the request active.
func TestRoundTripFailures(t *testing.T) {
	for _, pc := range protoCases {
		t.Run(pc.String(), func(t *testing.T) {
			// Refused.
			cfg := config.Cluster{Name: "f", Protocol: pc.protocol, Endpoints: static(closedAddr(t))}
			var o Options
			if pc.tls {
				o.TLS = newTestPKI(t).client()
				cfg.TLS = &config.ClusterTLS{Mode: "mtls"}
			}
			e := start(t, cfg, o).Pick(0, false, nil)
			_, err := e.RoundTrip(newStreamRequest(t, context.Background(), "GET", ""), pc.h2down)
			var de *DialError
			if !errors.As(err, &de) || Classify(err) != ConnectFailure || e.Active() != 0 {
				t.Fatalf("refused: %v (%T), %v, %d active", err, err, Classify(err), e.Active())
			}

			// Silent past the deadline.
			release := make(chan struct{})
			_, e, _ = startProtoCluster(t, pc, func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Warm") != "" {
					return
				}
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}, config.Cluster{})
			t.Cleanup(func() { close(release) })
			// The connection is set up first, with no deadline: under -race
			// on a loaded machine a TLS handshake can outlast 100 ms, and a
			// dial the deadline cuts is a ConnectFailure (the refused case
			// above), not the silent upstream this part is about.
			warm := newStreamRequest(t, context.Background(), "GET", "")
			warm.Header.Set("X-Warm", "1")
			resp, err := e.RoundTrip(warm, pc.h2down)
			if err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err = e.RoundTrip(newStreamRequest(t, ctx, "GET", ""), pc.h2down)
			if !errors.Is(err, fasthttp.ErrTimeout) || Classify(err) != Timeout || e.Active() != 0 {
				t.Fatalf("silent: %v, %v, %d active", err, Classify(err), e.Active())
			}

			if !pc.tls {
				return
			}
			// An upstream whose certificate the cluster does not trust.
			u := startHTTPUpstream(t, newTestPKI(t), []string{"h2", "http/1.1"}, echo)
			cfg = config.Cluster{Name: "f", Protocol: pc.protocol, Endpoints: static(u.addr), TLS: &config.ClusterTLS{Mode: "mtls"}}
			e = start(t, cfg, Options{TLS: newTestPKI(t).client()}).Pick(0, false, nil)
			_, err = e.RoundTrip(newStreamRequest(t, context.Background(), "GET", ""), pc.h2down)
			var ue x509.UnknownAuthorityError
			if !errors.As(err, &de) || !errors.As(err, &ue) || e.Active() != 0 {
				t.Fatalf("untrusted: %v (%T)", err, err)
			}
		})
	}
}

// lateTransport is an endpoint's real transport whose answers reach
// RoundTrip's caller only once the request's context has ended: the
// interleaving of a loaded machine, where net/http returns a response
// that raced the deadline (over HTTP/1.1 with TLS, one the upstream gave
// because the cancellation's close_notify ended its handler's context).
type lateTransport struct {
	roundTripper
	answered atomic.Bool
}

func (l *lateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.roundTripper.RoundTrip(req)
	if err == nil {
		l.answered.Store(true)
		<-req.Context().Done()
	}
	return resp, err
}

// An answer that arrives once the request's deadline has passed is a
// Timeout, never a success, and does not leave the request active
// (TestRoundTripFailures failed under -race on a loaded machine with
// "silent: <nil>, other, 1 active").
func TestRoundTripAnswerAfterDeadline(t *testing.T) {
	for _, pc := range protoCases {
		t.Run(pc.String(), func(t *testing.T) {
			_, e, _ := startProtoCluster(t, pc, echo, config.Cluster{})
			// Connected first, with no deadline: a dial the deadline cuts
			// is a ConnectFailure (TestRoundTripFailures).
			resp, err := e.RoundTrip(newStreamRequest(t, context.Background(), "GET", ""), pc.h2down)
			if err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			proto := e.c.protoFor(pc.h2down)
			lt := &lateTransport{roundTripper: e.streamTransport(proto)}
			e.streams.mu.Lock()
			e.streams.t[proto] = lt
			e.streams.mu.Unlock()
			// The deadline must leave the upstream time to answer: longer
			// ones when the machine is too loaded for that.
			for _, d := range []time.Duration{250 * time.Millisecond, time.Second, 4 * time.Second, 16 * time.Second} {
				ctx, cancel := context.WithTimeout(context.Background(), d)
				resp, err := e.RoundTrip(newStreamRequest(t, ctx, "GET", ""), pc.h2down)
				cancel()
				if resp != nil {
					_ = resp.Body.Close()
				}
				if !errors.Is(err, fasthttp.ErrTimeout) || Classify(err) != Timeout || e.Active() != 0 {
					t.Fatalf("deadline %v: %v, %v, %d active", d, err, Classify(err), e.Active())
				}
				if lt.answered.Load() {
					return
				}
			}
			t.Fatal("the upstream never answered within 16s")
		})
	}
}

// A cluster with no protocol set speaks HTTP/1.1.
func TestProtocolDefault(t *testing.T) {
	c := start(t, config.Cluster{Name: "p", Endpoints: static("127.0.0.1:1")}, Options{})
	if c.Protocol() != "http1" || c.UsesHTTP2(true) || c.AlwaysHTTP2(true) {
		t.Fatalf("Protocol() %q, UsesHTTP2 %v, AlwaysHTTP2 %v", c.Protocol(), c.UsesHTTP2(true), c.AlwaysHTTP2(true))
	}
}

// Protocol http2 over TLS needs the upstream to agree to h2 by ALPN; one
// that does not negotiate ALPN at all fails the dial with a reason that
// says so.
func TestHTTP2NeedsALPN(t *testing.T) {
	pki := newTestPKI(t)
	u := startHTTPUpstream(t, pki, nil, echo)
	c := start(t, config.Cluster{Name: "a", Protocol: "http2", Endpoints: static(u.addr), TLS: &config.ClusterTLS{Mode: "mtls"}}, Options{TLS: pki.client()})
	e := c.Pick(0, false, nil)
	_, err := e.RoundTrip(newStreamRequest(t, context.Background(), "GET", ""), false)
	var de *DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `did not negotiate h2 by ALPN (got "")`) {
		t.Fatalf("%v (%T)", err, err)
	}
	// Auto over TLS falls back to HTTP/1.1 with the same upstream.
	c = start(t, config.Cluster{Name: "a", Protocol: "auto", Endpoints: static(u.addr), TLS: &config.ClusterTLS{Mode: "mtls"}}, Options{TLS: pki.client()})
	resp, err := c.Pick(0, false, nil).RoundTrip(newStreamRequest(t, context.Background(), "GET", ""), false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.HasPrefix(string(b), "HTTP/1.1 tls=true") {
		t.Fatalf("auto: %q", b)
	}
}

// dialContext gives up at once on a context already past its deadline,
// without dialing, and dials within one that is not.
func TestDialContextDeadline(t *testing.T) {
	var addr string
	addr = serve(t, identity(&addr))
	c := start(t, config.Cluster{Name: "d", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	conn, err := e.dialContext(ctx)
	var de *DialError
	if conn != nil || !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v, %v", conn, err)
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 0 {
		t.Fatalf("%d dialed", n)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err = e.dialContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	conn, err = e.dialContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if n := c.stats.ConnectionsOpened.Load(); n != 2 {
		t.Fatalf("%d dialed, want 2", n)
	}
}

// Do on an HTTP/2 cluster (an HTTP/1.1 downstream, a buffered answer): the
// request's body and headers go (hop-by-hop ones not), the answer's
// headers and trailers come back as headers.
func TestDoOverHTTP2(t *testing.T) {
	for _, pc := range []protoCase{{"http2", false, false, "HTTP/2.0"}, {"http2", true, false, "HTTP/2.0"}} {
		t.Run(pc.String(), func(t *testing.T) {
			c, e, u := startProtoCluster(t, pc, echo, config.Cluster{})
			for _, body := range []string{"payload", ""} {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.Header.SetMethod("POST")
				req.SetRequestURI("/p?q=1")
				req.Header.SetHost("svc.test")
				req.Header.Set("X-Keep", "kept")
				req.Header.Set("Connection", "keep-alive")
				req.SetBodyString(body)
				err := e.Do(req, resp, time.Now().Add(30*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("HTTP/2.0 tls=%v host=svc.test close=false x-keep=\"kept\" keep-alive=\"\" body=%s req-trailer=\"\"", pc.tls, body)
				if string(resp.Body()) != want || resp.StatusCode() != 200 {
					t.Fatalf("%d %q, want %q", resp.StatusCode(), resp.Body(), want)
				}
				if string(resp.Header.Peek("X-Upstream")) != "yes" || string(resp.Header.Peek("X-Trailer")) != "done" {
					t.Fatalf("headers %q", resp.Header.String())
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
			if n := u.opened.get(); n != 1 || e.Active() != 0 {
				t.Fatalf("%d connections, %d active", n, e.Active())
			}
			_ = c
		})
	}
}

// Do on an HTTP/2 cluster: an answer past its deadline is a timeout, and
// one over the 64 MiB bound for buffered answers is refused, exactly at
// the bound.
func TestDoOverHTTP2Limits(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	big := bytes.Repeat([]byte{'b'}, 1<<20)
	_, e, _ := startProtoCluster(t, protoCase{protocol: "http2"}, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/silent":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/at", "/over":
			n := maxResponseBodyBytes
			if r.URL.Path == "/over" {
				n++
			}
			for n > 0 {
				k, err := w.Write(big[:min(n, len(big))])
				if err != nil {
					return
				}
				n -= k
			}
		}
	}, config.Cluster{})
	do := func(path string, d time.Duration) (int, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(path)
		req.Header.SetHost("svc.test")
		err := e.Do(req, resp, time.Now().Add(d))
		return len(resp.Body()), err
	}
	if _, err := do("/silent", 300*time.Millisecond); !errors.Is(err, fasthttp.ErrTimeout) || Classify(err) != Timeout {
		t.Fatalf("silent: %v", err)
	}
	if testing.Short() || raceEnabled {
		t.Skip("two answers of 64 MiB (5 s on a loaded machine, more under -race)")
	}
	if n, err := do("/at", 60*time.Second); err != nil || n != maxResponseBodyBytes {
		t.Fatalf("an answer of exactly the bound: %d bytes, %v", n, err)
	}
	if _, err := do("/over", 60*time.Second); err != fasthttp.ErrBodyTooLarge {
		t.Fatalf("an answer past the bound: %v", err)
	}
}

// streamH2 is an upstream for DoStream on an HTTP/2 cluster.
func streamH2(t *testing.T, tlsOn bool, idle time.Duration) (*Cluster, *Endpoint, chan struct{}) {
	next := make(chan struct{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	wait := func(r *http.Request) bool {
		select {
		case <-next:
			return true
		case <-release:
		case <-r.Context().Done():
		}
		return false
	}
	c, e, _ := startProtoCluster(t, protoCase{protocol: "http2", tls: tlsOn}, func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Trailer", "X-Trailer")
			w.Header().Set("Content-Length", "100000")
			_, _ = w.Write(bytes.Repeat([]byte{'L'}, 100000))
			w.Header().Set("X-Trailer", "after")
		case "/unknown":
			fl.Flush()
			_, _ = io.WriteString(w, "part1,")
			fl.Flush()
			_, _ = io.WriteString(w, "part2")
		case "/empty":
			w.Header().Set("Content-Length", "0")
			w.Header().Set("X-Upstream", "empty")
		case "/silent":
			wait(r)
		case "/stall":
			_, _ = io.WriteString(w, "some")
			fl.Flush()
			wait(r)
		case "/slow":
			fl.Flush() // the headers
			for range 5 {
				if !wait(r) {
					return
				}
				_, _ = io.WriteString(w, "x")
				fl.Flush()
			}
		default:
			echo(w, r)
		}
	}, config.Cluster{IdleTimeout: config.Duration(idle)})
	return c, e, next
}

func h2StreamReq(method, path string) (*fasthttp.Request, *fasthttp.Response) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetHost("svc.test")
	return req, resp
}

// DoStream on an HTTP/2 cluster (an HTTP/1.1 downstream): the answer's
// body streams with its length (or -1), its trailers join the header at
// its end, an empty or HEAD answer has no body to stream, and the request
// is active until the body is closed.
func TestDoStreamOverHTTP2(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprint("tls ", tlsOn), func(t *testing.T) {
			_, e, _ := streamH2(t, tlsOn, 0)
			req, resp := h2StreamReq("GET", "/length")
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
			if err != nil || body == nil {
				t.Fatalf("/length: %v, body %v", err, body != nil)
			}
			if body.ContentLength() != 100000 || resp.Header.ContentLength() != 100000 || e.Active() != 1 {
				t.Fatalf("/length: ContentLength %d, header's %d, %d active", body.ContentLength(), resp.Header.ContentLength(), e.Active())
			}
			if len(resp.Header.Peek("x-trailer")) != 0 {
				t.Fatal("a trailer before the body's end")
			}
			b, err := io.ReadAll(body)
			if err != nil || len(b) != 100000 {
				t.Fatalf("/length: %d bytes, %v", len(b), err)
			}
			if n, err := body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("a read after the end: %d, %v", n, err)
			}
			if string(resp.Header.Peek("x-trailer")) != "after" {
				t.Fatalf("trailers: %q", resp.Header.String())
			}
			_ = body.Close()
			_ = body.Close()
			if e.Active() != 0 {
				t.Fatalf("%d active after Close", e.Active())
			}

			req.SetRequestURI("/unknown")
			body, err = e.DoStream(req, resp, time.Time{}) // no deadline
			if err != nil || body == nil || body.ContentLength() != -1 {
				t.Fatalf("/unknown: %v, %v", err, body)
			}
			if b, err := io.ReadAll(body); err != nil || string(b) != "part1,part2" {
				t.Fatalf("/unknown: %q, %v", b, err)
			}
			_ = body.Close()

			for _, mp := range [][2]string{{"GET", "/empty"}, {"HEAD", "/length"}} {
				req.Header.SetMethod(mp[0])
				req.SetRequestURI(mp[1])
				body, err = e.DoStream(req, resp, time.Now().Add(30*time.Second))
				if err != nil || body != nil || resp.StatusCode() != 200 || e.Active() != 0 {
					t.Fatalf("%s %s: %v, body %v, %d, %d active", mp[0], mp[1], err, body != nil, resp.StatusCode(), e.Active())
				}
			}
			if string(resp.Header.Peek("Content-Length")) != "100000" {
				t.Fatalf("HEAD: Content-Length %q", resp.Header.Peek("Content-Length"))
			}
		})
	}
}

// Uploads through DoStreamBody on an HTTP/2 cluster: a body of known
// length and a chunked one, whose trailers (read with its last chunk) go
// upstream as trailers; and req's own body when there is no stream.
func TestDoStreamBodyOverHTTP2(t *testing.T) {
	_, e, _ := streamH2(t, false, 0)
	for _, tc := range []struct {
		size        int
		trailer     bool
		wantTrailer string
	}{{5, false, ""}, {-1, false, ""}, {-1, true, "42"}} {
		req, resp := h2StreamReq("POST", "/echo")
		ps, _ := pieces(2, 3)
		body := &piecesReader{pieces: ps, onRead: func(i int) error {
			if i == 2 && tc.trailer { // the end: the trailers were read with the last chunk
				req.Header.Set("X-Sum", "42")
			}
			return nil
		}}
		req.Header.Set("Keep-Alive", "timeout=5")
		req.Header.Set("X-Keep", "kept")
		if tc.trailer {
			req.Header.Set("Trailer", "X-Sum") // declared, as a client does
		}
		rb, err := e.DoStreamBody(req, body, tc.size, resp, time.Now().Add(30*time.Second))
		if err != nil || rb == nil {
			t.Fatalf("size %d: %v", tc.size, err)
		}
		b, _ := io.ReadAll(rb)
		_ = rb.Close()
		want := fmt.Sprintf("HTTP/2.0 tls=false host=svc.test close=false x-keep=\"kept\" keep-alive=\"\" body=aabbb req-trailer=%q", tc.wantTrailer)
		if string(b) != want {
			t.Fatalf("size %d: %q, want %q", tc.size, b, want)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	req, resp := h2StreamReq("POST", "/echo")
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetBodyString("buffered")
	rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if err != nil || rb == nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rb)
	_ = rb.Close()
	if !strings.Contains(string(b), " body=buffered ") {
		t.Fatalf("%q", b)
	}
	if e.Active() != 0 {
		t.Fatalf("%d active", e.Active())
	}
}

// abortBody is an upload whose client never sends more: after its first
// bytes, a Read waits until Abort (what the proxy's request body does when
// the transport gives it up). waiting is closed once that Read began.
type abortBody struct {
	sent    bool
	abort   chan struct{}
	once    sync.Once
	waiting chan struct{}
}

func (b *abortBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "start"), nil
	}
	close(b.waiting)
	select {
	case <-b.abort:
		return 0, errors.New("aborted")
	case <-time.After(30 * time.Second): // a safety net
		return 0, errors.New("never aborted")
	}
}

func (b *abortBody) Abort() { b.once.Do(func() { close(b.abort) }) }

// An HTTP/2 upstream that answers while the upload waits for its client:
// the transport gives the body up, the waiting Read is cut short (Abort),
// and the answer is DoStreamBody's.
func TestDoStreamBodyOverHTTP2EarlyAnswer(t *testing.T) {
	body := &abortBody{abort: make(chan struct{}), waiting: make(chan struct{})}
	_, e, _ := startProtoCluster(t, protoCase{protocol: "http2"}, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return
		}
		select { // the client's next read is waiting
		case <-body.waiting:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(401)
		_, _ = io.WriteString(w, "denied")
	}, config.Cluster{})
	req, resp := h2StreamReq("POST", "/early")
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	rb, err := e.DoStreamBody(req, body, -1, resp, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := string(resp.Body())
	if rb != nil {
		b, _ := io.ReadAll(rb)
		_ = rb.Close()
		got = string(b)
	}
	if resp.StatusCode() != 401 || got != "denied" {
		t.Fatalf("%d %q", resp.StatusCode(), got)
	}
	select {
	case <-body.abort:
	default:
		t.Fatal("the waiting read was not aborted")
	}
}

// DoStream on an HTTP/2 cluster: headers past the deadline are a timeout;
// a body silent for the idle timeout is cut with ErrBodyIdle, but one that
// keeps coming is not, though it lasts longer than the timeout.
func TestDoStreamOverHTTP2Timeouts(t *testing.T) {
	t.Run("headers", func(t *testing.T) {
		_, e, _ := streamH2(t, false, 0)
		req, resp := h2StreamReq("GET", "/silent")
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		if rb, err := e.DoStream(req, resp, time.Now().Add(300*time.Millisecond)); err != fasthttp.ErrTimeout || rb != nil {
			t.Fatalf("%v", err)
		}
		if e.Active() != 0 {
			t.Fatalf("%d active", e.Active())
		}
	})
	t.Run("idle", func(t *testing.T) {
		_, e, _ := streamH2(t, false, 200*time.Millisecond)
		req, resp := h2StreamReq("GET", "/stall")
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		if err != nil || rb == nil {
			t.Fatalf("%v", err)
		}
		defer rb.Close()
		read := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(rb)
			read <- err
		}()
		select {
		case err := <-read:
			if err != ErrBodyIdle {
				t.Fatalf("%v, want ErrBodyIdle", err)
			}
		case <-time.After(30 * time.Second): // a safety net
			t.Fatal("not cut")
		}
	})
	t.Run("slow", func(t *testing.T) {
		const idle = time.Second
		_, e, next := streamH2(t, false, idle)
		req, resp := h2StreamReq("GET", "/slow")
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		if err != nil || rb == nil {
			t.Fatalf("%v", err)
		}
		defer rb.Close()
		p := make([]byte, 1)
		for i := range 5 {
			if i > 0 {
				time.Sleep(idle / 3) // the pace of a slow upstream
			}
			next <- struct{}{}
			if n, err := rb.Read(p); n != 1 || err != nil {
				t.Fatalf("byte %d: %d, %v", i, n, err)
			}
		}
	})
}
