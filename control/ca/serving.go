package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// This file holds what the control plane's own API needs from the CA: a
// serving certificate, and checking a caller's client certificate.

// ServingTTL is the lifetime of the API's serving certificate; it is
// re-issued in memory at half-life.
const ServingTTL = 90 * 24 * time.Hour

// IssueServing makes a key in memory and a TLS server certificate for the
// control plane's API, valid for hosts (DNS names or IP addresses) and
// chained to the current signing root.
func (c *CA) IssueServing(hosts []string) (*tls.Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("ca: serving certificate: no host names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: serving key: %w", err)
	}
	now := time.Now()
	c.promote(now)
	c.mu.RLock()
	a := c.signer
	c.mu.RUnlock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"weft"}, OrganizationalUnit: []string{"weft-control"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              minTime(now.Add(ServingTTL), a.cert.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: serving certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	chain := [][]byte{der}
	for _, ic := range a.chain {
		chain = append(chain, ic.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// VerifyClient checks a TLS client's certificate chain (leaf first)
// against the current trust bundle, now, for client authentication, and
// returns the leaf. A chain verified against the same bundle is
// remembered, so the requests a sidecar makes over one connection (every
// watch and ACK) cost one signature check, not one each; the validity
// period is still checked at every call.
func (c *CA) VerifyClient(chain []*x509.Certificate) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("no client certificate")
	}
	roots, _ := c.Bundle()
	key := verifiedKey(roots, chain)
	now := time.Now()
	if c.verified.has(key) {
		for _, cert := range chain {
			if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
				c.verified.forget(key)
				return c.verifyClient(roots, chain, key)
			}
		}
		return chain[0], nil
	}
	return c.verifyClient(roots, chain, key)
}

func (c *CA) verifyClient(roots, chain []*x509.Certificate, key [sha256.Size]byte) (*x509.Certificate, error) {
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, ic := range chain[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	c.verified.add(key)
	return chain[0], nil
}

// verifiedKey names a chain checked against a bundle: a new bundle (a
// rotation) makes every chain new.
func verifiedKey(roots, chain []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	for _, set := range [][]*x509.Certificate{roots, chain} {
		for _, cert := range set {
			h.Write(cert.Raw)
		}
		h.Write([]byte{0})
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// verifiedChains remembers chains that verified; bounded, it starts over
// when full.
type verifiedChains struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]struct{}
}

const maxVerifiedChains = 16384

func (v *verifiedChains) has(k [sha256.Size]byte) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.m[k]
	return ok
}

func (v *verifiedChains) add(k [sha256.Size]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerifiedChains {
		v.m = map[[sha256.Size]byte]struct{}{}
	}
	v.m[k] = struct{}{}
}

func (v *verifiedChains) forget(k [sha256.Size]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, k)
}

// NodeOf is the node id a certificate issued by Sign is bound to, or ""
// for any other certificate.
func NodeOf(cert *x509.Certificate) string {
	if slices.Contains(cert.Subject.OrganizationalUnit, NodeOU) && len(cert.URIs) == 1 {
		return cert.Subject.CommonName
	}
	return ""
}

// Fingerprint is "sha256:" and the hex sha256 of a certificate's DER, as
// operators pin it (`weft ctl ca-cert --fingerprint`).
func Fingerprint(cert *x509.Certificate) string {
	s := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(s[:])
}
