package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
)

const testTD = "weft.test"

// caSigner signs with a CA in-process for one fixed identity: the proxy
// tests' stand-in for the control plane's /v1/certificate (the HTTP path
// is tested in control/).
type caSigner struct {
	ca *ca.CA
	id string
}

func (s caSigner) Sign(_ context.Context, csr []byte) (*identity.Issued, error) {
	is, err := s.ca.Sign(ca.Request{CSR: csr, ID: s.id})
	if err != nil {
		return nil, err
	}
	return &identity.Issued{Chain: is.Chain, Bundle: identity.NewBundle(testTD, is.Bundle), Signer: is.Signer}, nil
}

func (s caSigner) FetchBundle(context.Context) (*identity.Bundle, string, error) {
	roots, sg := s.ca.Bundle()
	return identity.NewBundle(testTD, roots), sg, nil
}

func newCA(t testing.TB, ttl time.Duration) *ca.CA {
	t.Helper()
	c, err := ca.Open(ca.Options{Dir: filepath.Join(t.TempDir(), "ca"), TrustDomain: testTD, TTL: ttl, Propagation: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rotatingIdentity runs identity.Source.Rotate for id until the test ends.
func rotatingIdentity(t testing.TB, c *ca.CA, id string, renewed *atomic.Int64) *identity.Source {
	t.Helper()
	src := identity.NewSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Rotate(ctx, identity.RotateOptions{Signer: caSigner{c, id}, BundleInterval: 50 * time.Millisecond,
			Renewed: func(*identity.SVID) {
				if renewed != nil {
					renewed.Add(1)
				}
			}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-src.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("identity not ready")
	}
	return src
}

func startProxyWith(t testing.TB, src *identity.Source, yamlText string, vars map[string]string) *Proxy {
	t.Helper()
	p, err := New(context.Background(), Options{Logger: testLogger(t), DrainTimeout: 2 * time.Second, Identity: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	raw := []byte(expand(yamlText, vars))
	cfg, err := config.Parse("test.yaml", raw)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	if err := p.Apply(context.Background(), cfg, raw, ""); err != nil {
		t.Fatal(err)
	}
	return p
}

// appServer is the local app: it answers 200 "app" with the path.
func appServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("app " + string(ctx.Path()))
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

const serverSidecar = `
listeners:
- name: inbound
  address: 127.0.0.1:0
  direction: inbound
  tls: {mode: {{mode}}}
  access_log: {enabled: true, path: {{log}}, fields: [path, status, peer_principal]}
  authz:
    default: deny
    rules:
    - {name: no-admin, action: deny, paths: ["/admin*"]}
    - {name: shop, action: allow, principals: ["spiffe://weft.test/ns/shop/*"]}
    - {name: health, action: allow, paths: ["/healthz"]}
  virtual_hosts:
  - name: app
    domains: ["*"]
    routes: [{match: {prefix: /}, route: {cluster: app}}]
clusters:
- name: app
  endpoints: [{address: "{{app}}"}]
`

const clientSidecar = `
listeners:
- name: outbound
  address: 127.0.0.1:0
  virtual_hosts:
  - name: orders
    domains: ["*"]
    routes: [{match: {prefix: /}, route: {cluster: orders, timeout: 5s}}]
clusters:
- name: orders
  endpoints: [{address: "{{orders}}"}]
  tls: {server_ids: ["{{server_id}}"]}
`

type mesh struct {
	ca        *ca.CA
	server    *Proxy
	inbound   string
	outbound  string
	logPath   string
	serverSrc *identity.Source
	clientSrc *identity.Source
}

const (
	ordersID = "spiffe://weft.test/ns/shop/sa/orders"
	webID    = "spiffe://weft.test/ns/shop/sa/web"
)

func startMesh(t *testing.T, mode string, ttl time.Duration, renewed *atomic.Int64) *mesh {
	t.Helper()
	m := &mesh{ca: newCA(t, ttl)}
	m.serverSrc = rotatingIdentity(t, m.ca, ordersID, renewed)
	m.clientSrc = rotatingIdentity(t, m.ca, webID, renewed)
	m.logPath = t.TempDir() + "/access.log"
	m.server = startProxyWith(t, m.serverSrc, serverSidecar, map[string]string{"mode": mode, "app": appServer(t), "log": m.logPath})
	m.inbound = m.server.ListenerAddr("inbound").String()
	cli := startProxyWith(t, m.clientSrc, clientSidecar, map[string]string{"orders": m.inbound, "server_id": ordersID})
	m.outbound = "http://" + cli.ListenerAddr("outbound").String()
	return m
}

// rawGet sends one GET over conn (plaintext or TLS) and returns the status,
// or an error when no HTTP answer came back.
func rawGet(addr string, cfg *tls.Config, path string) (int, string, error) {
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 3 * time.Second}
	if cfg != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Weft-Authz"), nil
}

// clientCert makes a certificate for id from c (or a self-made chain).
func clientTLS(t *testing.T, c *ca.CA, id string, bundle *identity.Source) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	is, err := c.Sign(ca.Request{CSR: csr, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range bundle.Bundle().Roots {
		pool.AddCert(r)
	}
	return &tls.Config{
		Certificates:       []tls.Certificate{{Certificate: is.Chain, PrivateKey: key}},
		InsecureSkipVerify: true,
	}
}

func TestMTLSStrictMesh(t *testing.T) {
	m := startMesh(t, "strict", time.Hour, nil)
	c := &fasthttp.Client{}

	// A valid identity through the client sidecar: mTLS hop, allowed.
	if st, body, _ := get(t, c, m.outbound+"/orders/1"); st != 200 || body != "app /orders/1" {
		t.Fatalf("valid identity: %d %q", st, body)
	}
	// A policy denial: 403 with the rule.
	st, _, h := get(t, c, m.outbound+"/admin/users")
	if st != 403 || h == nil || string(h.Peek("X-Weft-Authz")) != "denied:no-admin" {
		t.Fatalf("policy denial: %d %v", st, h)
	}
	// Plaintext to a strict port: refused (no HTTP answer).
	if st, _, err := rawGet(m.inbound, nil, "/healthz"); err == nil {
		t.Fatalf("plaintext to a strict listener got HTTP %d", st)
	}
	// TLS without a client certificate: refused.
	if st, _, err := rawGet(m.inbound, &tls.Config{InsecureSkipVerify: true}, "/healthz"); err == nil {
		t.Fatalf("TLS without a client certificate got HTTP %d", st)
	}
	// A certificate from another CA, for the right identity: refused.
	other := newCA(t, time.Hour)
	if st, _, err := rawGet(m.inbound, clientTLS(t, other, webID, m.clientSrc), "/healthz"); err == nil {
		t.Fatalf("a certificate from another CA got HTTP %d", st)
	}
	// An expired certificate from the right CA: refused.
	short, err := ca.Open(ca.Options{Dir: m.ca.Dir(), TrustDomain: testTD, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	expired := clientTLS(t, short, webID, m.clientSrc)
	if st, _, err := rawGet(m.inbound, expired, "/healthz"); err != nil || st != 200 {
		t.Fatalf("the short-lived certificate should work while valid: %d %v", st, err)
	}
	// Wait (on the clock, not a guess) until the certificate has expired.
	leaf, err := x509.ParseCertificate(expired.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the 1s certificate to expire", func() bool { return time.Now().After(leaf.NotAfter) })
	expired.ClientSessionCache = nil
	if st, _, err := rawGet(m.inbound, expired, "/healthz"); err == nil {
		t.Fatalf("an expired certificate got HTTP %d", st)
	}
	// The same CA, another namespace: authenticated, but no allow rule.
	st, why, err := rawGet(m.inbound, clientTLS(t, m.ca, "spiffe://weft.test/ns/evil/sa/web", m.clientSrc), "/orders/1")
	if err != nil || st != 403 || why != "denied:default" {
		t.Fatalf("foreign namespace: %d %q %v; want 403 denied:default", st, why, err)
	}
	// The peer principal reached the access log.
	eventually(t, 5*time.Second, "access log with the peer principal", func() bool {
		b, _ := readFile(m.logPath)
		return strings.Contains(b, `"peer_principal":"`+webID+`"`) && strings.Contains(b, `"peer_principal":"spiffe://weft.test/ns/evil/sa/web"`)
	})
	// Denials are counted per rule.
	mfs, _ := m.server.Metrics().Registry().Gather()
	denied := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "weft_authz_denied_total" {
			for _, mt := range mf.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "rule" {
						denied[l.GetValue()] = mt.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if denied["no-admin"] != 1 || denied["default"] != 1 {
		t.Fatalf("denial counters %v, want no-admin=1 default=1", denied)
	}
}

func TestMTLSWrongServerIdentityRefused(t *testing.T) {
	c := newCA(t, time.Hour)
	srv := startProxyWith(t, rotatingIdentity(t, c, "spiffe://weft.test/ns/shop/sa/impostor", nil), serverSidecar,
		map[string]string{"mode": "strict", "app": appServer(t), "log": "/dev/null"})
	cli := startProxyWith(t, rotatingIdentity(t, c, webID, nil), clientSidecar,
		map[string]string{"orders": srv.ListenerAddr("inbound").String(), "server_id": ordersID})
	st, _, _ := get(t, &fasthttp.Client{}, "http://"+cli.ListenerAddr("outbound").String()+"/x")
	// The handshake is part of getting the connection (doH1 completes it
	// before the request's first write): its failure is the endpoint's
	// connect failure, 503 as in Envoy (UF), and nothing is sent.
	if st != 503 {
		t.Fatalf("a server with the wrong SPIFFE ID: status %d, want 503 (a connect failure)", st)
	}
}

func TestMTLSPermissiveAcceptsBoth(t *testing.T) {
	m := startMesh(t, "permissive", time.Hour, nil)
	// Plaintext: no peer identity, so only the path rule admits it.
	if st, _, err := rawGet(m.inbound, nil, "/healthz"); err != nil || st != 200 {
		t.Fatalf("plaintext /healthz on a permissive port: %d %v", st, err)
	}
	if st, why, err := rawGet(m.inbound, nil, "/orders/1"); err != nil || st != 403 || why != "denied:default" {
		t.Fatalf("plaintext /orders on a permissive port: %d %q %v; want 403 (no principal)", st, why, err)
	}
	// mTLS on the same port: the principal admits it.
	if st, body, _ := get(t, &fasthttp.Client{}, m.outbound+"/orders/2"); st != 200 || body != "app /orders/2" {
		t.Fatalf("mTLS on a permissive port: %d %q", st, body)
	}
}

// TestMTLSRotationUnderLoad renews both sidecars' certificates (2s TTL,
// renewed every second) and rotates the root CA while four workers send
// requests over keep-alive and fresh connections: no request may fail.
func TestMTLSRotationUnderLoad(t *testing.T) {
	var renewed atomic.Int64
	m := startMesh(t, "strict", 2*time.Second, &renewed)
	startSigner := m.serverSrc.SVID().Certificate.Leaf.Issuer.String()
	var sent atomic.Int64
	ld := startLoad(t, 4, 20000, func(c *fasthttp.Client) string {
		if sent.Add(1)%50 == 0 {
			c.CloseIdleConnections() // new mTLS handshakes too
		}
		if st, body, _ := get(t, c, m.outbound+"/orders/1"); st != 200 {
			return fmt.Sprintf("%d %s", st, body)
		}
		return ""
	})
	// Each sidecar renews once on the old root under load (2 at start).
	eventually(t, 15*time.Second, "a renewal of both sidecars under load", func() bool {
		return renewed.Load() >= 4 && ld.Total() > 0
	})
	if err := m.ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "both sidecars to hold certificates of the new root and renew again", func() bool {
		return m.serverSrc.SVID().Certificate.Leaf.Issuer.String() != startSigner &&
			m.clientSrc.SVID().Certificate.Leaf.Issuer.String() != startSigner && renewed.Load() >= 8
	})
	// Load past a renewal of both on the new root.
	n := renewed.Load()
	eventually(t, 15*time.Second, "a further renewal of both sidecars", func() bool { return renewed.Load() >= n+2 })
	failed := ld.Failed()
	t.Logf("requests %s; renewals=%d", ld, renewed.Load())
	if failed != 0 {
		t.Fatalf("requests failed during rotation: %s", ld)
	}
	if ld.Total() < 50 {
		t.Fatalf("only %d requests ran", ld.Total())
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// TestMTLSHopOverHTTP2Cluster: a client sidecar whose cluster to the
// server sidecar has protocol http2 speaks HTTP/2 on the mTLS hop (weft's
// own HTTP/2 client, h2 by ALPN, which refuses a hop that did not
// negotiate h2): requests reach the app, many at once over the hop's
// multiplexed connections, and the server sidecar sees the client's
// identity.
func TestMTLSHopOverHTTP2Cluster(t *testing.T) {
	c := newCA(t, time.Hour)
	serverSrc := rotatingIdentity(t, c, ordersID, nil)
	clientSrc := rotatingIdentity(t, c, webID, nil)
	logPath := t.TempDir() + "/access.log"
	server := startProxyWith(t, serverSrc, serverSidecar, map[string]string{"mode": "strict", "app": appServer(t), "log": logPath})
	h2Client := strings.Replace(clientSidecar, "  tls: {server_ids:", "  protocol: http2\n  tls: {server_ids:", 1)
	cli := startProxyWith(t, clientSrc, h2Client, map[string]string{"orders": server.ListenerAddr("inbound").String(), "server_id": ordersID})
	outbound := "http://" + cli.ListenerAddr("outbound").String()
	fc := &fasthttp.Client{}
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/orders/%d", i)
			if st, body, _ := get(t, fc, outbound+path); st != 200 || body != "app "+path {
				errs <- fmt.Sprintf("%s: %d %q", path, st, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if st, _, h := get(t, fc, outbound+"/admin/x"); st != 403 || h == nil || string(h.Peek("X-Weft-Authz")) != "denied:no-admin" {
		t.Fatalf("policy denial over the h2 hop: %d", st)
	}
	eventually(t, 10*time.Second, "the peer principal in the server's access log", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), webID)
	})
}
