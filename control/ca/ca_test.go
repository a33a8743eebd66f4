package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func csr(t *testing.T, uris ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		p, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func verify(t *testing.T, is *Issued, roots []*x509.Certificate, at time.Time) error {
	t.Helper()
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, der := range is.Chain[1:] {
		c, _ := x509.ParseCertificate(der)
		inter.AddCert(c)
	}
	_, err := is.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

const id = "spiffe://weft.test/ns/shop/sa/orders"

func TestSignIssuesTheNodesIdentity(t *testing.T) {
	for _, inter := range []bool{false, true} {
		c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test", TTL: time.Hour, Intermediate: inter})
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range [][]byte{csr(t), csr(t, id)} {
			is, err := c.Sign(Request{CSR: req, ID: id})
			if err != nil {
				t.Fatal(err)
			}
			if len(is.Leaf.URIs) != 1 || is.Leaf.URIs[0].String() != id {
				t.Fatalf("URI SANs %v, want %s", is.Leaf.URIs, id)
			}
			if life := is.Leaf.NotAfter.Sub(is.Leaf.NotBefore); life < time.Hour || life > time.Hour+2*time.Minute {
				t.Fatalf("lifetime %s, want the 1h TTL (+ skew)", life)
			}
			if len(is.Chain) != map[bool]int{false: 1, true: 2}[inter] {
				t.Fatalf("intermediate=%v: chain of %d", inter, len(is.Chain))
			}
			roots, _ := c.Bundle()
			if err := verify(t, is, roots, time.Now()); err != nil {
				t.Fatalf("intermediate=%v: does not verify against the bundle: %v", inter, err)
			}
			if err := verify(t, is, roots, time.Now().Add(2*time.Hour)); err == nil {
				t.Fatal("still valid after its TTL")
			}
		}
	}
}

func TestSignRefusesForeignIdentities(t *testing.T) {
	c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test"})
	if err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string][]byte{
		"other sa":      csr(t, "spiffe://weft.test/ns/shop/sa/payments"),
		"two ids":       csr(t, id, "spiffe://weft.test/ns/shop/sa/payments"),
		"other domain":  csr(t, "spiffe://evil.test/ns/shop/sa/orders"),
		"not spiffe id": csr(t, "https://orders.shop"),
	} {
		if _, err := c.Sign(Request{CSR: req, ID: id}); !errors.Is(err, ErrForeignIdentity) {
			t.Errorf("%s: err = %v, want ErrForeignIdentity", name, err)
		}
	}
	if _, err := c.Sign(Request{CSR: csr(t), ID: "spiffe://other.test/ns/a/sa/b"}); err == nil {
		t.Error("signed an identity outside the trust domain")
	}
	bad := csr(t)
	bad[len(bad)-3] ^= 0xff // breaks the signature
	if _, err := c.Sign(Request{CSR: bad, ID: id}); err == nil {
		t.Error("signed a CSR with a broken signature")
	}
}

func TestRootPersistsAndRotatesWithOverlap(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, TrustDomain: "weft.test", TTL: time.Hour, Propagation: time.Hour, Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	roots1, signer1 := c.Bundle()
	old, _ := c.Sign(Request{CSR: csr(t), ID: id})

	again, err := Open(Options{Dir: dir, TrustDomain: "weft.test", Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	if roots, s := again.Bundle(); s != signer1 || len(roots) != 1 || !roots[0].Equal(roots1[0]) {
		t.Fatal("a restart did not keep the root")
	}

	if err := c.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rotate(); err == nil {
		t.Fatal("a second rotation while one is pending was accepted")
	}
	roots, s := c.Bundle()
	if s != signer1 || len(roots) != 2 {
		t.Fatalf("during propagation: signer changed=%v, %d roots; want the old signer and both roots", s != signer1, len(roots))
	}
	// A restart during propagation keeps the pending rotation.
	mid, err := Open(Options{Dir: dir, TrustDomain: "weft.test", TTL: time.Hour, Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := mid.Bundle(); len(r) != 2 {
		t.Fatalf("restart lost the pending root: %d roots", len(r))
	}
	// The propagation delay ends: promote as the next Sign or Bundle would
	// once the clock reaches it (no test waits an hour, nor races a short
	// delay against a slow machine).
	c.mu.RLock()
	due := c.nextAt
	c.mu.RUnlock()
	c.promote(due)
	fresh, err := c.Sign(Request{CSR: csr(t), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	roots, s = c.Bundle()
	if s == signer1 || len(roots) != 2 {
		t.Fatalf("after propagation: signer changed=%v, %d roots; want a new signer and both roots (overlap)", s != signer1, len(roots))
	}
	if verify(t, old, roots, time.Now()) != nil || verify(t, fresh, roots, time.Now()) != nil {
		t.Fatal("the overlap bundle must verify certificates of both roots")
	}
	if verify(t, fresh, roots1, time.Now()) == nil {
		t.Fatal("a certificate of the new root verified against the old root alone")
	}
	after, err := Open(Options{Dir: dir, TrustDomain: "weft.test", TTL: time.Hour, Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	if r, s2 := after.Bundle(); s2 != s || len(r) != 2 {
		t.Fatalf("restart after rotation: signer kept=%v, %d roots", s2 == s, len(r))
	}
}

func TestOperatorRootAndTokens(t *testing.T) {
	gen := t.TempDir()
	if _, err := Open(Options{Dir: gen, TrustDomain: "weft.test"}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test",
		RootCertFile: filepath.Join(gen, "root-cert.pem"), RootKeyFile: filepath.Join(gen, "root-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rotate(); err == nil {
		t.Fatal("rotated an operator-supplied root")
	}
	is, err := c.Sign(Request{CSR: csr(t), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if err := is.Leaf.CheckSignatureFrom(is.Bundle[0]); err != nil {
		t.Fatalf("not signed by the operator's root: %v", err)
	}

}

func TestJoinTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tk, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tk.now = func() time.Time { return now }
	ok := func() error { return nil }
	redeem := func(tk *Tokens, node, tok string) error { return tk.Redeem(node, tok, ok) }
	a, _, _ := tk.Issue("orders-1", 0, 0)
	b, exp, _ := tk.Issue("web-1", time.Minute, 2)
	if !exp.Equal(now.Add(time.Minute).UTC()) {
		t.Fatalf("expiry %s", exp)
	}
	if raw, _ := os.ReadFile(path); strings.Contains(string(raw), a) || !strings.Contains(string(raw), digest(a)) {
		t.Fatalf("tokens.json must hold digests only:\n%s", raw)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens.json mode %v", fi.Mode())
	}
	refused := func(err, want error) {
		t.Helper()
		var te *TokenError
		if !errors.As(err, &te) || !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
	}
	refused(redeem(tk, "orders-1", b), ErrTokenOtherNode)
	refused(redeem(tk, "orders-1", ""), ErrTokenUnknown)
	refused(redeem(tk, "orders-1", "wjt_nope"), ErrTokenUnknown)
	// A failed use spends nothing.
	if err := tk.Redeem("orders-1", a, func() error { return errors.New("bad CSR") }); err == nil || err.Error() != "bad CSR" {
		t.Fatal(err)
	}
	if err := redeem(tk, "orders-1", a); err != nil {
		t.Fatal(err)
	}
	refused(redeem(tk, "orders-1", a), ErrTokenUsed) // single-use by default
	reloaded, _ := OpenTokens(path)
	reloaded.now = tk.now
	refused(redeem(reloaded, "orders-1", a), ErrTokenUsed) // and still after a restart
	if redeem(reloaded, "web-1", b) != nil || redeem(reloaded, "web-1", b) != nil {
		t.Fatal("a two-use token was refused")
	}
	refused(redeem(reloaded, "web-1", b), ErrTokenUsed)
	c, _, _ := reloaded.Issue("web-1", time.Minute, 1)
	now = now.Add(time.Minute)
	refused(redeem(reloaded, "web-1", c), ErrTokenExpired)
	d, _, _ := reloaded.Issue("web-1", time.Minute, 1)
	refused(redeem(reloaded, "web-1", c), ErrTokenUnknown) // re-issuing replaced it
	_ = reloaded.Revoke("web-1")
	refused(redeem(reloaded, "web-1", d), ErrTokenUnknown)
	for _, bad := range []struct {
		ttl  time.Duration
		uses int
		want string
	}{{time.Millisecond, 1, "ttl:"}, {MaxTokenTTL + 1, 1, "ttl:"}, {time.Hour, -1, "uses:"}, {time.Hour, MaxTokenUses + 1, "uses:"}} {
		if _, _, err := tk.Issue("x", bad.ttl, bad.uses); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Fatalf("Issue(ttl %s, uses %d): %v", bad.ttl, bad.uses, err)
		}
	}
}

func TestNodeCertificatesAndServing(t *testing.T) {
	c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test", Intermediate: true})
	if err != nil {
		t.Fatal(err)
	}
	is, err := c.Sign(Request{CSR: csr(t), ID: id, Node: "orders-1"})
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{is.Leaf}
	for _, der := range is.Chain[1:] {
		ic, _ := x509.ParseCertificate(der)
		chain = append(chain, ic)
	}
	leaf, err := c.VerifyClient(chain)
	if err != nil || NodeOf(leaf) != "orders-1" {
		t.Fatalf("node certificate: %v, node %q", err, NodeOf(is.Leaf))
	}
	if _, err := c.VerifyClient(chain[:1]); err == nil {
		t.Fatal("a chain without its intermediate verified")
	}
	// A chain verified once is remembered, but its validity period is
	// still checked at every use.
	if _, err := c.VerifyClient(chain); err != nil {
		t.Fatalf("the same chain again: %v", err)
	}
	expired := *chain[0]
	expired.NotAfter = time.Now().Add(-time.Minute)
	if _, err := c.VerifyClient(append([]*x509.Certificate{&expired}, chain[1:]...)); err == nil {
		t.Fatal("an expired leaf verified (remembered from when it was valid)")
	}
	other, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := other.VerifyClient(chain); err == nil {
			t.Fatalf("attempt %d: another CA accepted the chain", i+1)
		}
	}
	plain, _ := c.Sign(Request{CSR: csr(t), ID: id})
	if NodeOf(plain.Leaf) != "" {
		t.Fatal("a certificate without a node names one")
	}
	srv, err := c.IssueServing([]string{"control.mesh", "127.0.0.1", "localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := c.Bundle()
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	inter := x509.NewCertPool()
	ic, _ := x509.ParseCertificate(srv.Certificate[1])
	inter.AddCert(ic)
	for _, host := range []string{"control.mesh", "127.0.0.1", "localhost"} {
		if _, err := srv.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter}); err != nil {
			t.Fatalf("serving certificate for %s: %v", host, err)
		}
	}
	if len(srv.Leaf.IPAddresses) != 1 || NodeOf(srv.Leaf) != "" {
		t.Fatalf("serving certificate SANs %v %v", srv.Leaf.IPAddresses, srv.Leaf.DNSNames)
	}
	if _, err := c.VerifyClient([]*x509.Certificate{srv.Leaf, ic}); err == nil {
		t.Fatal("a server-only certificate authenticated a client")
	}
}
