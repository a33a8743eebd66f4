package tcpproxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
)

const testTD = "weft.test"

const (
	ordersID = "spiffe://weft.test/ns/shop/sa/orders"
	webID    = "spiffe://weft.test/ns/shop/sa/web"
	bannedID = "spiffe://weft.test/ns/shop/sa/banned"
)

func newCA(t testing.TB) *ca.CA {
	t.Helper()
	c, err := ca.Open(ca.Options{Dir: filepath.Join(t.TempDir(), "ca"), TrustDomain: testTD, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue signs a fresh key for id.
func issue(t testing.TB, c *ca.CA, id string) (*ca.Issued, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	is, err := c.Sign(ca.Request{CSR: csr, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return is, key
}

// meshIdentity is a sidecar identity issued by c (no rotation: the tests
// are shorter than the certificate's life).
func meshIdentity(t testing.TB, c *ca.CA, id string) *identity.Source {
	t.Helper()
	is, key := issue(t, c, id)
	svid, err := identity.NewSVID(&tls.Certificate{Certificate: is.Chain, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	src := identity.NewSource()
	src.SetBundle(identity.NewBundle(testTD, is.Bundle))
	src.SetSVID(svid)
	return src
}

// clientTLS is a client config presenting a certificate for id from c; it
// does not check the server (the tests check what the server accepts).
func clientTLS(t testing.TB, c *ca.CA, id string) *tls.Config {
	t.Helper()
	is, key := issue(t, c, id)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: is.Chain, PrivateKey: key}}, InsecureSkipVerify: true}
}

func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

// startProxy runs a proxy with yamlText applied; it shuts down when the
// test ends.
func startProxy(t testing.TB, src *identity.Source, yamlText string, vars map[string]string) *proxy.Proxy {
	t.Helper()
	p, err := proxy.New(context.Background(), proxy.Options{Logger: zap.NewNop(), DrainTimeout: 500 * time.Millisecond, Identity: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	apply(t, p, yamlText, vars)
	return p
}

func apply(t testing.TB, p *proxy.Proxy, yamlText string, vars map[string]string) {
	t.Helper()
	raw := []byte(expand(yamlText, vars))
	cfg, err := config.Parse("test.yaml", raw)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	if err := p.Apply(context.Background(), cfg, raw, ""); err != nil {
		t.Fatal(err)
	}
}

// echoServer is the local app: a TCP echo that half-closes its side when
// the client does. kill closes it and every connection it has.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

func startEcho(t testing.TB) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	t.Cleanup(e.kill)
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.accepted.Add(1)
		e.mu.Lock()
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if _, err := io.Copy(c, c); err == nil {
				_ = c.(*net.TCPConn).CloseWrite() // EOF in, EOF out
			}
			_ = c.Close()
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
		}()
	}
}

// kill stops the server and closes every connection it holds.
func (e *echoServer) kill() {
	e.once.Do(func() {
		_ = e.ln.Close()
		e.mu.Lock()
		for c := range e.conns {
			_ = c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
}

// dial connects to addr (TLS with cfg when set).
func dial(t testing.TB, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second}
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back.
func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

// refused reports whether c is closed by the server without an echo: a
// write then a read that ends (EOF, reset or a TLS alert) with no byte.
func refused(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "ping: anyone there?\n") // longer than a TLS record header
	var b [16]byte
	n, err := c.Read(b[:])
	if n > 0 {
		return errors.New("got an echo: " + string(b[:n]))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("the connection stayed open")
	}
	return nil
}

// metric sums the samples of family name whose labels include want.
func metric(t testing.TB, p *proxy.Proxy, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := p.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func eventually(t testing.TB, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
