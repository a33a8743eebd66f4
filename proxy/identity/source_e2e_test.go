package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/proxy/identity"
)

const trustDomain = "weft.test"

var (
	ordersID = identity.WorkloadID(trustDomain, "shop", "orders")
	webID    = identity.WorkloadID(trustDomain, "shop", "web")
)

// caSigner is the real CA behind identity.Signer for one workload id, as
// the control plane's certificate API is (without the HTTP in between).
type caSigner struct {
	ca *ca.CA
	id string
	// failFirst Sign calls fail before the CA is asked; signs counts calls.
	failFirst atomic.Int64
	signs     atomic.Int64
	// otherKey, when set, has the CA certify this key instead of the CSR's.
	otherKey bool
}

func (s *caSigner) Sign(_ context.Context, csrDER []byte) (*identity.Issued, error) {
	s.signs.Add(1)
	if s.failFirst.Add(-1) >= 0 {
		return nil, errors.New("control plane unavailable")
	}
	if s.otherKey {
		csrDER = newCSR(nil)
	}
	is, err := s.ca.Sign(ca.Request{CSR: csrDER, ID: s.id})
	if err != nil {
		return nil, err
	}
	return &identity.Issued{Chain: is.Chain, Bundle: identity.NewBundle(s.ca.TrustDomain(), is.Bundle), Signer: is.Signer}, nil
}

func (s *caSigner) FetchBundle(context.Context) (*identity.Bundle, string, error) {
	roots, signer := s.ca.Bundle()
	return identity.NewBundle(s.ca.TrustDomain(), roots), signer, nil
}

// newCSR is a CSR for a new P-256 key (returned through key when not nil).
func newCSR(key **ecdsa.PrivateKey) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		panic(err)
	}
	if key != nil {
		*key = k
	}
	return der
}

func openCA(t *testing.T, o ca.Options) *ca.CA {
	t.Helper()
	o.Dir = t.TempDir()
	if o.TrustDomain == "" {
		o.TrustDomain = trustDomain
	}
	c, err := ca.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rotating starts src.Rotate with sg until the test ends.
func rotating(t *testing.T, sg identity.Signer, o identity.RotateOptions) *identity.Source {
	t.Helper()
	src := identity.NewSource()
	o.Signer = sg
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Rotate(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Rotate returned %v, want context.Canceled", err)
		}
	})
	return src
}

func waitReady(t *testing.T, src *identity.Source) {
	t.Helper()
	select {
	case <-src.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the source never got an SVID and a bundle")
	}
}

// waitFor polls cond (every 5ms, at most 10s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// serveTLS accepts TLS connections with cfg on 127.0.0.1:0 and reports
// each handshake's outcome: the peer's SPIFFE ID or the error.
func serveTLS(t *testing.T, src *identity.Source, cfg *tls.Config) (string, <-chan string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				out <- "error: " + err.Error()
			} else {
				id, err := src.VerifyPeer(tc.ConnectionState().PeerCertificates)
				if err != nil {
					id = "error: " + err.Error()
				}
				out <- id
				_, _ = tc.Write([]byte("x")) // completes the client's TLS 1.3 handshake
			}
			_ = tc.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), out
}

// dial handshakes with cfg and reads one byte (a TLS 1.3 client learns of
// a refused certificate only then).
func dial(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestMutualTLSBetweenRotatingSources(t *testing.T) {
	authority := openCA(t, ca.Options{TTL: time.Hour})
	orders := rotating(t, &caSigner{ca: authority, id: ordersID}, identity.RotateOptions{})
	web := rotating(t, &caSigner{ca: authority, id: webID}, identity.RotateOptions{})
	stranger := rotating(t, &caSigner{ca: openCA(t, ca.Options{TTL: time.Hour}), id: webID}, identity.RotateOptions{})
	for _, s := range []*identity.Source{orders, web, stranger} {
		waitReady(t, s)
	}
	if orders.SVID().ID != ordersID || web.SVID().ID != webID {
		t.Fatalf("SVIDs %s, %s", orders.SVID().ID, web.SVID().ID)
	}
	addr, seen := serveTLS(t, orders, orders.ServerConfig(tls.VersionTLS13))

	for _, tc := range []struct {
		name       string
		client     *tls.Config
		ok         bool
		serverSees string // prefix of what the server reports
	}{
		{"exact server id", web.ClientConfig(tls.VersionTLS13, []string{ordersID}), true, webID},
		{"pattern", web.ClientConfig(tls.VersionTLS13, []string{"spiffe://weft.test/ns/shop/*"}), true, webID},
		{"any id of the domain", web.ClientConfig(tls.VersionTLS13, nil), true, webID},
		{"wrong server id", web.ClientConfig(tls.VersionTLS13, []string{"spiffe://weft.test/ns/shop/sa/payments"}), false, "error: "},
		// Same SPIFFE ID, but from a CA the server does not trust.
		{"untrusted client", stranger.ClientConfig(tls.VersionTLS13, nil), false, "error: "},
		{"no client certificate", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, false, "error: "}, //nolint:gosec // the test's point
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := dial(addr, tc.client)
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error %v, want ok=%v", err, tc.ok)
			}
			if got := <-seen; !strings.HasPrefix(got, tc.serverSees) {
				t.Fatalf("server saw %q, want %q", got, tc.serverSees)
			}
		})
	}
}

func TestRotateRenewsWithANewKey(t *testing.T) {
	// A 2s certificate is renewed at half its life, with a new key.
	authority := openCA(t, ca.Options{TTL: 2 * time.Second})
	var mu sync.Mutex
	var renewed []*identity.SVID
	src := rotating(t, &caSigner{ca: authority, id: ordersID}, identity.RotateOptions{Renewed: func(v *identity.SVID) {
		mu.Lock()
		renewed = append(renewed, v)
		mu.Unlock()
	}})
	waitFor(t, "a renewal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(renewed) >= 2
	})
	mu.Lock()
	first, second := renewed[0], renewed[1]
	mu.Unlock()
	if first.Certificate.Leaf.SerialNumber.Cmp(second.Certificate.Leaf.SerialNumber) == 0 {
		t.Fatal("renewal kept the certificate")
	}
	k1, k2 := first.Certificate.PrivateKey.(*ecdsa.PrivateKey), second.Certificate.PrivateKey.(*ecdsa.PrivateKey)
	if k1.Equal(k2) {
		t.Fatal("renewal kept the private key")
	}
	if second.NotAfter.Before(first.NotAfter) || src.SVID() == nil {
		t.Fatalf("renewed certificate ends %v, before the first's %v", second.NotAfter, first.NotAfter)
	}
}

func TestRotateRenewsWhenTheSigningRootChanges(t *testing.T) {
	authority := openCA(t, ca.Options{TTL: time.Hour, Propagation: 10 * time.Millisecond, Intermediate: true})
	src := rotating(t, &caSigner{ca: authority, id: ordersID}, identity.RotateOptions{BundleInterval: 10 * time.Millisecond})
	waitReady(t, src)
	// The intermediates share a name: tell them apart by key.
	firstIssuer := string(src.SVID().Certificate.Leaf.AuthorityKeyId)
	firstBundle := src.Bundle().Version
	if err := authority.Rotate(); err != nil {
		t.Fatal(err)
	}
	// The new root joins the bundle at once; once it signs, the sidecar
	// renews without waiting for half its hour.
	waitFor(t, "a certificate from the new root, with both roots trusted", func() bool {
		return string(src.SVID().Certificate.Leaf.AuthorityKeyId) != firstIssuer && len(src.Bundle().Roots) == 2
	})
	if src.Bundle().Version == firstBundle {
		t.Fatal("bundle version unchanged with a new root in it")
	}
}

func TestRotateRetriesAFailedRenewal(t *testing.T) {
	sg := &caSigner{ca: openCA(t, ca.Options{TTL: time.Hour}), id: ordersID}
	sg.failFirst.Store(3)
	src := rotating(t, sg, identity.RotateOptions{MinRetry: time.Millisecond, MaxRetry: 5 * time.Millisecond})
	waitReady(t, src)
	if n := sg.signs.Load(); n != 4 {
		t.Fatalf("%d Sign calls, want 3 failures and 1 success", n)
	}
}

// TestRotateRefusesACertificateForAnotherKey: a signer answering with a
// certificate for some other key gets no SVID installed, only retries.
func TestRotateRefusesACertificateForAnotherKey(t *testing.T) {
	sg := &caSigner{ca: openCA(t, ca.Options{TTL: time.Hour}), id: ordersID, otherKey: true}
	src := rotating(t, sg, identity.RotateOptions{MinRetry: time.Millisecond, MaxRetry: 5 * time.Millisecond})
	waitFor(t, "retries", func() bool { return sg.signs.Load() >= 3 })
	if v := src.SVID(); v != nil {
		t.Fatalf("installed an SVID for a key the sidecar does not hold: %s", v.ID)
	}
	select {
	case <-src.Ready():
		t.Fatal("ready without an SVID")
	default:
	}
}

func TestRotateNeedsASigner(t *testing.T) {
	if err := identity.NewSource().Rotate(context.Background(), identity.RotateOptions{}); err == nil {
		t.Fatal("Rotate without a Signer started")
	}
}

// issue has the CA certify a new key for id and returns chain, key and
// roots as PEM.
func issue(t *testing.T, authority *ca.CA, id string) (chainPEM, keyPEM, rootsPEM []byte) {
	t.Helper()
	var key *ecdsa.PrivateKey
	is, err := authority.Sign(ca.Request{CSR: newCSR(&key), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, der := range is.Chain {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return chainPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), identity.EncodeCertsPEM(is.Bundle...)
}

func TestLoadFiles(t *testing.T) {
	authority := openCA(t, ca.Options{TTL: time.Hour, Intermediate: true})
	chain, key, roots := issue(t, authority, ordersID)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, keyFile, caFile := write("cert.pem", chain), write("key.pem", key), write("ca.pem", roots)

	src, err := identity.LoadFiles(cert, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.Ready():
	default:
		t.Fatal("a source from files is not ready")
	}
	if src.SVID().ID != ordersID || src.Bundle().TrustDomain != trustDomain || len(src.SVID().Certificate.Certificate) != 2 {
		t.Fatalf("SVID %s (chain of %d), bundle for %q", src.SVID().ID, len(src.SVID().Certificate.Certificate), src.Bundle().TrustDomain)
	}
	// Its own chain verifies against its bundle.
	leaf := src.SVID().Certificate.Leaf
	inter, _ := x509.ParseCertificate(src.SVID().Certificate.Certificate[1])
	if id, err := src.VerifyPeer([]*x509.Certificate{leaf, inter}); err != nil || id != ordersID {
		t.Fatalf("VerifyPeer(own chain) = %q, %v", id, err)
	}

	noSpiffe := write("plain.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfSigned(t, key)}))
	for _, tc := range []struct {
		name                 string
		cert, key, ca, wantE string
	}{
		{"missing key", cert, filepath.Join(dir, "nope.pem"), caFile, "nope.pem"},
		{"missing ca", cert, keyFile, filepath.Join(dir, "nope-ca.pem"), "nope-ca.pem"},
		{"ca without certificates", cert, keyFile, keyFile, "trust bundle: no certificate"},
		{"leaf without a spiffe id", noSpiffe, keyFile, caFile, "leaf certificate:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := identity.LoadFiles(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), tc.wantE) {
				t.Fatalf("err = %v, want one saying %q", err, tc.wantE)
			}
		})
	}
}

// selfSigned is a certificate for the key in keyPEM with no URI SAN.
func selfSigned(t *testing.T, keyPEM []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*ecdsa.PrivateKey)
	tmpl := &x509.Certificate{SerialNumber: serial(), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyPeerRefusals(t *testing.T) {
	authority, other := openCA(t, ca.Options{TTL: time.Hour}), openCA(t, ca.Options{TTL: time.Hour, TrustDomain: "other.test"})
	leafOf := func(c *ca.CA, id string) *x509.Certificate {
		is, err := c.Sign(ca.Request{CSR: newCSR(nil), ID: id})
		if err != nil {
			t.Fatal(err)
		}
		return is.Leaf
	}
	roots, _ := authority.Bundle()
	otherRoots, _ := other.Bundle()
	good := leafOf(authority, ordersID)

	empty := identity.NewSource()
	if _, err := empty.VerifyPeer([]*x509.Certificate{good}); err == nil || !strings.Contains(err.Error(), "no trust bundle") {
		t.Fatalf("no bundle: %v", err)
	}
	src := identity.NewSource()
	src.SetBundle(identity.NewBundle(trustDomain, roots))
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  string
	}{
		{"no certificate", nil, "sent no certificate"},
		{"other CA", []*x509.Certificate{leafOf(other, "spiffe://other.test/ns/a/sa/b")}, "peer certificate:"},
	} {
		if _, err := src.VerifyPeer(tc.chain); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A bundle that trusts another domain's root still checks the domain.
	mixed := identity.NewSource()
	mixed.SetBundle(identity.NewBundle(trustDomain, append(append([]*x509.Certificate(nil), roots...), otherRoots...)))
	if _, err := mixed.VerifyPeer([]*x509.Certificate{leafOf(other, "spiffe://other.test/ns/a/sa/b")}); err == nil || !strings.Contains(err.Error(), `not in trust domain "weft.test"`) {
		t.Fatalf("foreign domain: %v", err)
	}
	if id, err := mixed.VerifyPeer([]*x509.Certificate{good}); err != nil || id != ordersID {
		t.Fatalf("own domain through a mixed bundle: %q %v", id, err)
	}
}

func TestBundlesAndPEM(t *testing.T) {
	a, b := openCA(t, ca.Options{TTL: time.Hour}), openCA(t, ca.Options{TTL: time.Hour})
	ra, _ := a.Bundle()
	rb, _ := b.Bundle()
	if identity.NewBundle(trustDomain, ra).Version != identity.NewBundle(trustDomain, ra).Version {
		t.Fatal("bundle version is not a function of the roots")
	}
	if identity.NewBundle(trustDomain, ra).Version == identity.NewBundle(trustDomain, rb).Version {
		t.Fatal("different roots, same bundle version")
	}
	// Other PEM blocks are skipped; certificates are read in order.
	_, keyPEM, _ := issue(t, a, ordersID)
	data := append(append(append([]byte(nil), keyPEM...), identity.EncodeCertsPEM(ra[0])...), identity.EncodeCertsPEM(rb[0])...)
	bundle, err := identity.ParseBundlePEM(trustDomain, data)
	if err != nil || len(bundle.Roots) != 2 || !bundle.Roots[0].Equal(ra[0]) || !bundle.Roots[1].Equal(rb[0]) {
		t.Fatalf("ParseBundlePEM: %v, %v", bundle, err)
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	if _, err := identity.ParseBundlePEM(trustDomain, append(identity.EncodeCertsPEM(ra[0]), bad...)); err == nil || !strings.Contains(err.Error(), "certificate 1") {
		t.Fatalf("bad certificate: %v, want it named by position", err)
	}
}

func serial() *big.Int { return big.NewInt(time.Now().UnixNano()) }
