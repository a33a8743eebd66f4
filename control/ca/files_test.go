package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/identity"
)

// TestRotationDefaults: with Overlap and Propagation unset (or negative),
// a new root signs one minute after Rotate and the old root stays in the
// bundle for TTL + 1h after that; set values are kept.
func TestRotationDefaults(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		overlap, propagation time.Duration
		wantOverlap, wantPro time.Duration
	}{
		{"unset", 0, 0, 2 * time.Hour, time.Minute},
		{"negative", -time.Second, -time.Second, 2 * time.Hour, time.Minute},
		{"set", 3 * time.Hour, 5 * time.Minute, 3 * time.Hour, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test", TTL: time.Hour, Overlap: tc.overlap, Propagation: tc.propagation})
			if err != nil {
				t.Fatal(err)
			}
			_, oldSigner := c.Bundle()
			before := time.Now()
			if err := c.Rotate(); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			c.mu.RLock()
			due := c.nextAt
			c.mu.RUnlock()
			if due.Before(before.Add(tc.wantPro)) || due.After(after.Add(tc.wantPro)) {
				t.Fatalf("the new root signs from %s, want Rotate's time + %s (%s..%s)", due, tc.wantPro, before.Add(tc.wantPro), after.Add(tc.wantPro))
			}
			// One nanosecond before it is due nothing changes.
			c.promote(due.Add(-1))
			if _, s := c.Bundle(); s != oldSigner {
				t.Fatal("the new root signed before its propagation delay ended")
			}
			c.promote(due)
			c.mu.RLock()
			defer c.mu.RUnlock()
			if fingerprint(c.signer.root) == oldSigner {
				t.Fatal("the new root does not sign once due")
			}
			if len(c.retired) != 1 || !c.retired[0].Until.Equal(due.Add(tc.wantOverlap)) {
				t.Fatalf("retired roots %+v, want the old root until %s", c.retired, due.Add(tc.wantOverlap))
			}
			if got := len(c.bundleLocked(due.Add(tc.wantOverlap - 1))); got != 2 {
				t.Fatalf("%d roots in the bundle just before the overlap ends, want 2", got)
			}
			if got := len(c.bundleLocked(due.Add(tc.wantOverlap))); got != 1 {
				t.Fatalf("%d roots in the bundle once the overlap ended, want 1", got)
			}
		})
	}
}

// intermediateOf is the intermediate certificate a signed leaf carries.
func intermediateOf(t *testing.T, c *CA) []byte {
	t.Helper()
	is, err := c.Sign(Request{CSR: csr(t), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(is.Chain) != 2 {
		t.Fatalf("chain of %d certificates, want leaf and intermediate", len(is.Chain))
	}
	return is.Chain[1]
}

// TestIntermediateOnRestart: a restart keeps the intermediate the root
// signed; one the root did not sign is replaced by a new one under the
// root; one that cannot be read stops Open with an error naming it.
func TestIntermediateOnRestart(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, TrustDomain: "weft.test", Intermediate: true}
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	first := intermediateOf(t, c)
	again, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(intermediateOf(t, again), first) {
		t.Fatal("a restart replaced an intermediate signed by the root")
	}

	// Another CA's intermediate, not signed by this root.
	other := t.TempDir()
	if _, err := Open(Options{Dir: other, TrustDomain: "weft.test", Intermediate: true}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"intermediate-cert.pem", "intermediate-key.pem"} {
		b, err := os.ReadFile(filepath.Join(other, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	replaced, err := Open(o)
	if err != nil {
		t.Fatalf("an intermediate of another root: %v, want it replaced", err)
	}
	im := intermediateOf(t, replaced)
	foreign, _ := os.ReadFile(filepath.Join(other, "intermediate-cert.pem"))
	imCert, _ := x509.ParseCertificate(im)
	roots, _ := replaced.Bundle()
	if bytes.Equal(im, first) || bytes.Contains(foreign, im) || imCert.CheckSignatureFrom(roots[0]) != nil {
		t.Fatal("the intermediate used is not a new one under this root")
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, "intermediate-cert.pem"))
	if bytes.Equal(onDisk, foreign) {
		t.Fatal("the new intermediate was not saved")
	}

	if err := os.WriteFile(filepath.Join(dir, "intermediate-key.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "intermediate") || !strings.Contains(err.Error(), "intermediate-key.pem") {
		t.Fatalf("an unreadable intermediate key: %v, want an error naming it", err)
	}
}

// TestPromotionSaved: once a rotation's root signs, the files say so — the
// new root (and intermediate) are the current ones, the old root is in
// retired.json, the pending rotation's files are gone — and a restart
// signs with exactly the same authority.
func TestPromotionSaved(t *testing.T) {
	for _, inter := range []bool{false, true} {
		t.Run(map[bool]string{false: "root", true: "intermediate"}[inter], func(t *testing.T) {
			dir := t.TempDir()
			o := Options{Dir: dir, TrustDomain: "weft.test", TTL: time.Hour, Intermediate: inter}
			c, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			oldRoots, _ := c.Bundle()
			if err := c.Rotate(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "next.json")); err != nil {
				t.Fatalf("a pending rotation is not saved: %v", err)
			}
			c.mu.RLock()
			due := c.nextAt
			c.mu.RUnlock()
			c.promote(due)
			c.mu.RLock()
			newRoot, newCert := c.signer.root, c.signer.cert
			c.mu.RUnlock()
			if newRoot.Equal(oldRoots[0]) {
				t.Fatal("not promoted")
			}
			for _, f := range []string{"next.json", "next-root-cert.pem", "next-root-key.pem", "next-intermediate-cert.pem", "next-intermediate-key.pem"} {
				if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s is left after the promotion (%v)", f, err)
				}
			}
			rootPEM, _ := os.ReadFile(filepath.Join(dir, "root-cert.pem"))
			if !bytes.Contains(rootPEM, pemOf(newRoot)) {
				t.Error("root-cert.pem is not the new root")
			}
			if inter {
				imPEM, _ := os.ReadFile(filepath.Join(dir, "intermediate-cert.pem"))
				if !bytes.Contains(imPEM, pemOf(newCert)) {
					t.Error("intermediate-cert.pem is not the new intermediate")
				}
			}
			raw, err := os.ReadFile(filepath.Join(dir, "retired.json"))
			if err != nil {
				t.Fatal(err)
			}
			var ret []retired
			if err := json.Unmarshal(raw, &ret); err != nil || len(ret) != 1 || !strings.Contains(ret[0].CertPEM, string(pemOf(oldRoots[0]))) {
				t.Fatalf("retired.json %s (%v), want the old root", raw, err)
			}

			re, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			re.mu.RLock()
			same := re.signer.cert.Equal(newCert) && re.signer.root.Equal(newRoot) && re.next == nil
			re.mu.RUnlock()
			if !same {
				t.Fatal("a restart after the promotion signs with another authority or has a rotation pending")
			}
			if roots, _ := re.Bundle(); len(roots) != 2 || !roots[1].Equal(oldRoots[0]) {
				t.Fatalf("a restart after the promotion has %d roots, want the new and the retired one", len(roots))
			}
		})
	}
}

// pemOf is a certificate's PEM block, as the CA's files hold it.
func pemOf(c *x509.Certificate) []byte { return identity.EncodeCertsPEM(c) }

// TestTokenFileSorted: tokens.json lists its entries by digest, so the
// file's bytes do not depend on map order.
func TestTokenFileSorted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tk, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if _, _, err := tk.Issue("node-"+string(rune('a'+i)), time.Hour, 1); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f tokenFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Tokens) != 8 {
		t.Fatalf("%d tokens in the file, want 8", len(f.Tokens))
	}
	for i := 1; i < len(f.Tokens); i++ {
		if f.Tokens[i-1].SHA256 >= f.Tokens[i].SHA256 {
			t.Fatalf("tokens.json not in digest order at %d:\n%s", i, raw)
		}
	}
}
