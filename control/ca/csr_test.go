package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
)

// csrWith is a CSR signed by key from tmpl (the node's URI SAN added).
func csrWith(t *testing.T, key crypto.Signer, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	u, _ := url.Parse(id)
	tmpl.URIs = append(tmpl.URIs, u)
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ecKey(t *testing.T, c elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignRefusesOtherNames: an SVID carries only its SPIFFE ID, so a CSR
// asking for a DNS name, an IP address or an e-mail address is refused as a
// foreign identity (a sidecar could otherwise get a certificate valid for
// any host name a client checks).
func TestSignRefusesOtherNames(t *testing.T) {
	c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test"})
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t, elliptic.P256())
	for _, tc := range []struct {
		name string
		tmpl x509.CertificateRequest
	}{
		{"dns", x509.CertificateRequest{DNSNames: []string{"orders.shop.svc"}}},
		{"ip", x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}},
		{"email", x509.CertificateRequest{EmailAddresses: []string{"orders@shop.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is, err := c.Sign(Request{CSR: csrWith(t, key, tc.tmpl), ID: id})
			if !errors.Is(err, ErrForeignIdentity) {
				t.Fatalf("err = %v, want ErrForeignIdentity", err)
			}
			if is != nil {
				t.Fatalf("issued a certificate: %v", is.Leaf.Subject)
			}
		})
	}
	// The same key with only its SPIFFE ID is signed: the refusal is about
	// the names.
	if _, err := c.Sign(Request{CSR: csrWith(t, key, x509.CertificateRequest{}), ID: id}); err != nil {
		t.Fatalf("a plain CSR was refused: %v", err)
	}
}

// TestSignChecksTheKey: workload keys are ECDSA P-256/P-384, RSA of at least
// 2048 bits, or Ed25519; weaker ones are refused with the reason.
func TestSignChecksTheKey(t *testing.T) {
	c, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		key     crypto.Signer
		wantErr string // "" when accepted
	}{
		{"ecdsa p256", ecKey(t, elliptic.P256()), ""},
		{"ecdsa p384", ecKey(t, elliptic.P384()), ""},
		{"ecdsa p224", ecKey(t, elliptic.P224()), "ECDSA keys must be P-256 or P-384"},
		{"ecdsa p521", ecKey(t, elliptic.P521()), "ECDSA keys must be P-256 or P-384"},
		{"rsa 2048", rsaKey(t, 2048), ""},
		{"rsa 2047", rsaKey(t, 2047), "RSA key of 2047 bits is too small (2048 at least)"},
		{"rsa 1024", rsaKey(t, 1024), "RSA key of 1024 bits is too small (2048 at least)"},
		{"ed25519", edKey, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is, err := c.Sign(Request{CSR: csrWith(t, tc.key, x509.CertificateRequest{}), ID: id})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !is.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.key.Public()) {
					t.Fatal("the certificate is not for the CSR's key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
			}
		})
	}
}
