package identity

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// SVID is one issued X.509 SPIFFE identity: the certificate chain (leaf
// first, then intermediates) and its private key.
type SVID struct {
	// ID is the leaf's SPIFFE ID (its URI SAN).
	ID string
	// Certificate is the chain and key, ready for crypto/tls (Leaf set).
	Certificate *tls.Certificate
	NotBefore   time.Time
	NotAfter    time.Time
}

// Bundle is a set of trusted root certificates for one trust domain. During
// a CA rotation it holds the old and the new root, so peers holding either
// kind of certificate are accepted.
type Bundle struct {
	TrustDomain string
	Roots       []*x509.Certificate
	// Version changes whenever Roots change (a digest of them).
	Version string
	pool    *x509.CertPool
}

// NewBundle makes a bundle of roots for trustDomain.
func NewBundle(trustDomain string, roots []*x509.Certificate) *Bundle {
	b := &Bundle{TrustDomain: trustDomain, Roots: roots, pool: x509.NewCertPool()}
	h := sha256.New()
	for _, r := range roots {
		b.pool.AddCert(r)
		h.Write(r.Raw)
	}
	b.Version = hex.EncodeToString(h.Sum(nil)[:8])
	return b
}

// ParseBundlePEM reads a bundle of PEM "CERTIFICATE" blocks.
func ParseBundlePEM(trustDomain string, data []byte) (*Bundle, error) {
	certs, err := ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("trust bundle: no certificate")
	}
	return NewBundle(trustDomain, certs), nil
}

// ParseCertsPEM reads every PEM "CERTIFICATE" block in data.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
}

// EncodeCertsPEM writes certificates as PEM blocks.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// material is what the TLS callbacks read: one consistent pair.
type material struct {
	svid   *SVID
	bundle *Bundle
}

// Source holds a sidecar's current SVID and trust bundle. The TLS configs
// it makes read them on every handshake, so SetSVID and SetBundle take
// effect for the next handshake without touching open connections. All
// methods are safe for concurrent use.
type Source struct {
	cur   atomic.Pointer[material]
	ready chan struct{}
	// now is the clock (tests move it).
	now func() time.Time
}

// NewSource makes an empty source; it serves no handshake until it has an
// SVID and a bundle.
func NewSource() *Source {
	s := &Source{ready: make(chan struct{}), now: time.Now}
	s.cur.Store(&material{})
	return s
}

// SetSVID installs a new SVID for the next handshakes.
func (s *Source) SetSVID(v *SVID) {
	for {
		old := s.cur.Load()
		if s.cur.CompareAndSwap(old, &material{svid: v, bundle: old.bundle}) {
			break
		}
	}
	s.markReady()
}

// SetBundle installs a new trust bundle for the next handshakes.
func (s *Source) SetBundle(b *Bundle) {
	for {
		old := s.cur.Load()
		if s.cur.CompareAndSwap(old, &material{svid: old.svid, bundle: b}) {
			break
		}
	}
	s.markReady()
}

func (s *Source) markReady() {
	m := s.cur.Load()
	if m.svid != nil && m.bundle != nil {
		select {
		case <-s.ready:
		default:
			close(s.ready)
		}
	}
}

// Ready is closed once the source has both an SVID and a bundle.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// SVID is the current SVID, or nil.
func (s *Source) SVID() *SVID { return s.cur.Load().svid }

// Bundle is the current trust bundle, or nil.
func (s *Source) Bundle() *Bundle { return s.cur.Load().bundle }

func (s *Source) certificate() (*tls.Certificate, error) {
	m := s.cur.Load()
	if m.svid == nil {
		return nil, errors.New("identity: no SVID yet")
	}
	return m.svid.Certificate, nil
}

// VerifyPeer checks a peer's certificate chain (leaf first) against the
// current trust bundle at the current time, and returns the leaf's SPIFFE
// ID, which must be in the bundle's trust domain.
func (s *Source) VerifyPeer(chain []*x509.Certificate) (string, error) {
	b := s.cur.Load().bundle
	if b == nil {
		return "", errors.New("identity: no trust bundle yet")
	}
	if len(chain) == 0 {
		return "", errors.New("identity: the peer sent no certificate")
	}
	leaf := chain[0]
	opts := x509.VerifyOptions{Roots: b.pool, CurrentTime: s.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("identity: peer certificate: %w", err)
	}
	id := PeerID(leaf)
	if id == "" {
		return "", errors.New("identity: peer certificate has no spiffe:// URI SAN")
	}
	td, _, err := ParseID(id)
	if err != nil {
		return "", fmt.Errorf("identity: peer certificate: %w", err)
	}
	if b.TrustDomain != "" && td != b.TrustDomain {
		return "", fmt.Errorf("identity: peer %s is not in trust domain %q", id, b.TrustDomain)
	}
	return id, nil
}

// PeerID is a certificate's first spiffe:// URI SAN, or "".
func PeerID(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == Scheme {
			return u.String()
		}
	}
	return ""
}

// ServerConfig is the TLS config of an mTLS listener: it presents the
// current SVID, requires a client certificate chained to the current
// bundle (checked on every handshake, resumed ones too, so a bundle change
// applies at once), and prefers TLS 1.3 (TLS 1.2 is accepted when
// minVersion allows it).
func (s *Source) ServerConfig(minVersion uint16) *tls.Config {
	return &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate() },
		// The chain is verified by VerifyConnection against the live
		// bundle, not a ClientCAs pool fixed at build time.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.VerifyPeer(cs.PeerCertificates)
			return err
		},
	}
}

// ClientConfig is the TLS config for dialing an mTLS upstream: it presents
// the current SVID and accepts the server only if its chain verifies
// against the current bundle and its SPIFFE ID matches one of the patterns
// (see MatchPattern; none means any ID of the trust domain). Host names
// are not checked: the SPIFFE ID is the server's identity. Sessions are
// cached for resumption.
func (s *Source) ClientConfig(minVersion uint16, serverIDs []string) *tls.Config {
	ids := append([]string(nil), serverIDs...)
	return &tls.Config{
		MinVersion:           minVersion,
		InsecureSkipVerify:   true, // replaced by VerifyConnection below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.certificate() },
		ClientSessionCache:   tls.NewLRUClientSessionCache(1024),
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.VerifyPeer(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return nil
			}
			for _, p := range ids {
				if MatchPattern(p, id) {
					return nil
				}
			}
			return fmt.Errorf("identity: server is %s, want %v", id, ids)
		},
	}
}

// LoadFiles makes a source from PEM files: a certificate chain, its key and
// a CA bundle (an operator-managed identity; not rotated). The trust domain
// is the leaf's.
func LoadFiles(certFile, keyFile, caFile string) (*Source, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %s, %s: %w", certFile, keyFile, err)
	}
	v, err := NewSVID(&pair)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", certFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	td, _, _ := ParseID(v.ID)
	b, err := ParseBundlePEM(td, caPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", caFile, err)
	}
	s := NewSource()
	s.SetBundle(b)
	s.SetSVID(v)
	return s, nil
}

// NewSVID wraps a key pair whose leaf has a SPIFFE URI SAN.
func NewSVID(pair *tls.Certificate) (*SVID, error) {
	if len(pair.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf := pair.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
		pair.Leaf = leaf
	}
	id := PeerID(leaf)
	if _, _, err := ParseID(id); err != nil {
		return nil, fmt.Errorf("leaf certificate: %w", err)
	}
	return &SVID{ID: id, Certificate: pair, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil
}
