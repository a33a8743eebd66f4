package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/identity"
)

// Defaults for Options.
const (
	DefaultTrustDomain = "weft.local"
	DefaultTTL         = 24 * time.Hour
	// MaxTTL bounds a workload certificate's lifetime.
	MaxTTL = 30 * 24 * time.Hour
	// rootLifetime is a generated root's validity.
	rootLifetime = 10 * 365 * 24 * time.Hour
	// intermediateLifetime is a generated intermediate's validity.
	intermediateLifetime = 365 * 24 * time.Hour
	// clockSkew backdates certificates so peers with a slightly slow clock
	// accept them.
	clockSkew = time.Minute
)

// ErrForeignIdentity is returned by Sign when the CSR asks for an identity
// other than the node's.
var ErrForeignIdentity = errors.New("the CSR asks for an identity that is not the node's")

// Options configure Open.
type Options struct {
	// Dir keeps the CA's files (DATA/ca). Required.
	Dir string
	// TrustDomain is the SPIFFE trust domain (default weft.local).
	TrustDomain string
	// TTL is the lifetime of workload certificates (default 24h).
	TTL time.Duration
	// RootCertFile and RootKeyFile, when set, are an operator-supplied root
	// (PEM): it is used instead of a generated one and never written.
	RootCertFile, RootKeyFile string
	// Intermediate signs workload certificates with an intermediate CA
	// (generated under the root) instead of the root itself.
	Intermediate bool
	// Overlap is how long a retired root stays in the bundle after a
	// rotation (default TTL + 1h, so every certificate it signed expires or
	// is renewed before it goes).
	Overlap time.Duration
	// Propagation is how long a new root is in the bundle before it signs
	// (default 1m): sidecars poll the bundle, so every peer trusts the new
	// root before any certificate it signed is presented.
	Propagation time.Duration
	Logger      *zap.Logger
}

// authority is one signing key with its certificate and the chain above it.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	// chain is what a leaf carries after itself (the intermediate, if any).
	chain []*x509.Certificate
	// root is the trust anchor this authority chains to; rootKey is its
	// key when the authority is an intermediate we generated (kept to save
	// the root with it).
	root    *x509.Certificate
	rootKey crypto.Signer
}

// retired is a root kept in the bundle until Until.
type retired struct {
	CertPEM string    `json:"cert_pem"`
	Until   time.Time `json:"until"`
	cert    *x509.Certificate
}

// CA is a running certificate authority. Methods are safe for concurrent
// use.
type CA struct {
	o   Options
	log *zap.Logger

	mu      sync.RWMutex
	signer  *authority
	retired []retired
	// next is a rotation's new authority: in the bundle now, signing from
	// nextAt on.
	next   *authority
	nextAt time.Time

	// verified are the client chains VerifyClient accepted.
	verified verifiedChains
}

// Open loads the CA from Dir, creating the root (and intermediate) on first
// start.
func Open(o Options) (*CA, error) {
	if o.Dir == "" {
		return nil, errors.New("ca: a directory is required")
	}
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if err := identity.CheckTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < time.Second || o.TTL > MaxTTL {
		return nil, fmt.Errorf("ca: ttl %s is out of range 1s..%s", o.TTL, MaxTTL)
	}
	if o.Overlap <= 0 {
		o.Overlap = o.TTL + time.Hour
	}
	if o.Propagation <= 0 {
		o.Propagation = time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if (o.RootCertFile == "") != (o.RootKeyFile == "") {
		return nil, errors.New("ca: give both a root certificate file and its key file, or neither")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	c := &CA{o: o, log: o.Logger}
	root, err := c.loadRoot()
	if err != nil {
		return nil, err
	}
	a := &authority{cert: root.cert, key: root.key, root: root.cert}
	if o.Intermediate {
		if a, err = c.loadIntermediate(root); err != nil {
			return nil, err
		}
	}
	c.signer = a
	if err := c.loadRetired(); err != nil {
		return nil, err
	}
	if err := c.loadNext(); err != nil {
		return nil, err
	}
	c.promote(time.Now())
	return c, nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() string { return c.o.TrustDomain }

// Dir is the directory holding the CA's files.
func (c *CA) Dir() string { return c.o.Dir }

// TTL is the lifetime of the certificates Sign issues.
func (c *CA) TTL() time.Duration { return c.o.TTL }

func (c *CA) path(name string) string { return filepath.Join(c.o.Dir, name) }

// loadRoot reads the operator's root, or the generated one, generating it
// on first start.
func (c *CA) loadRoot() (*authority, error) {
	if c.o.RootCertFile != "" {
		a, err := readPair(c.o.RootCertFile, c.o.RootKeyFile)
		if err != nil {
			return nil, fmt.Errorf("ca: root: %w", err)
		}
		if !a.cert.IsCA {
			return nil, fmt.Errorf("ca: root %s is not a CA certificate", c.o.RootCertFile)
		}
		return a, nil
	}
	a, err := readPair(c.path("root-cert.pem"), c.path("root-key.pem"))
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ca: root: %w", err)
	}
	a, err = c.newRoot()
	if err != nil {
		return nil, err
	}
	c.log.Info("generated a new root CA", zap.String("trust_domain", c.o.TrustDomain), zap.String("dir", c.o.Dir))
	return a, nil
}

// newRoot generates and saves a root.
func (c *CA) newRoot() (*authority, error) {
	a, err := c.makeRoot()
	if err != nil {
		return nil, err
	}
	if err := writePair(c.path("root-cert.pem"), c.path("root-key.pem"), a.cert, a.key); err != nil {
		return nil, fmt.Errorf("ca: saving the root: %w", err)
	}
	return a, nil
}

// makeRoot generates a root (not saved).
func (c *CA) makeRoot() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: root key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft root CA " + c.o.TrustDomain + " " + now.UTC().Format("20060102T150405.000")},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: c.o.TrustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: root certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &authority{cert: cert, key: key, root: cert}, nil
}

// loadIntermediate reads the intermediate signed by root, or makes one.
func (c *CA) loadIntermediate(root *authority) (*authority, error) {
	a, err := readPair(c.path("intermediate-cert.pem"), c.path("intermediate-key.pem"))
	if err == nil && a.cert.CheckSignatureFrom(root.cert) == nil {
		a.chain, a.root, a.rootKey = []*x509.Certificate{a.cert}, root.cert, root.key
		return a, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ca: intermediate: %w", err)
	}
	a, err = c.makeIntermediate(root)
	if err != nil {
		return nil, err
	}
	if err := writePair(c.path("intermediate-cert.pem"), c.path("intermediate-key.pem"), a.cert, a.key); err != nil {
		return nil, fmt.Errorf("ca: saving the intermediate: %w", err)
	}
	return a, nil
}

// makeIntermediate generates an intermediate under root (not saved).
func (c *CA) makeIntermediate(root *authority) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: intermediate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft intermediate CA " + c.o.TrustDomain},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              minTime(now.Add(intermediateLifetime), root.cert.NotAfter),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: c.o.TrustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, &key.PublicKey, root.key)
	if err != nil {
		return nil, fmt.Errorf("ca: intermediate certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &authority{cert: cert, key: key, chain: []*x509.Certificate{cert}, root: root.cert, rootKey: root.key}, nil
}

// nextState is a pending rotation on disk (next.json).
type nextState struct {
	SignsFrom time.Time `json:"signs_from"`
}

// saveNextLocked writes a pending rotation: next-root-*.pem,
// next-intermediate-*.pem, next.json.
func (c *CA) saveNextLocked() error {
	n := c.next
	rootKey := n.key
	if n.root != n.cert {
		return c.saveNextWithIntermediate()
	}
	if err := writePair(c.path("next-root-cert.pem"), c.path("next-root-key.pem"), n.root, rootKey); err != nil {
		return fmt.Errorf("ca: saving the next root: %w", err)
	}
	return c.writeNextJSON()
}

func (c *CA) saveNextWithIntermediate() error {
	n := c.next
	// The root key is only needed to make the intermediate; it is kept so
	// a restart can load the root as an authority.
	if err := writePair(c.path("next-root-cert.pem"), c.path("next-root-key.pem"), n.root, n.rootKey); err != nil {
		return fmt.Errorf("ca: saving the next root: %w", err)
	}
	if err := writePair(c.path("next-intermediate-cert.pem"), c.path("next-intermediate-key.pem"), n.cert, n.key); err != nil {
		return fmt.Errorf("ca: saving the next intermediate: %w", err)
	}
	return c.writeNextJSON()
}

func (c *CA) writeNextJSON() error {
	b, _ := json.Marshal(nextState{SignsFrom: c.nextAt})
	if err := writeFile(c.path("next.json"), b, 0o600); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// loadNext reads a pending rotation, if any.
func (c *CA) loadNext() error {
	b, err := os.ReadFile(c.path("next.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	var ns nextState
	if err := json.Unmarshal(b, &ns); err != nil {
		return fmt.Errorf("ca: next.json: %w", err)
	}
	root, err := readPair(c.path("next-root-cert.pem"), c.path("next-root-key.pem"))
	if err != nil {
		return fmt.Errorf("ca: next root: %w", err)
	}
	a := root
	if c.o.Intermediate {
		im, err := readPair(c.path("next-intermediate-cert.pem"), c.path("next-intermediate-key.pem"))
		if err != nil {
			return fmt.Errorf("ca: next intermediate: %w", err)
		}
		a = &authority{cert: im.cert, key: im.key, chain: []*x509.Certificate{im.cert}, root: root.cert, rootKey: root.key}
	}
	c.next, c.nextAt = a, ns.SignsFrom
	return nil
}

// saveLocked writes the signer (root, intermediate) and retired roots,
// and removes the pending rotation's files.
func (c *CA) saveLocked() error {
	a := c.signer
	if a.root == a.cert {
		if err := writePair(c.path("root-cert.pem"), c.path("root-key.pem"), a.cert, a.key); err != nil {
			return err
		}
	} else {
		if err := writePair(c.path("root-cert.pem"), c.path("root-key.pem"), a.root, a.rootKey); err != nil {
			return err
		}
		if err := writePair(c.path("intermediate-cert.pem"), c.path("intermediate-key.pem"), a.cert, a.key); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(c.retired, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(c.path("retired.json"), b, 0o600); err != nil {
		return err
	}
	for _, f := range []string{"next.json", "next-root-cert.pem", "next-root-key.pem", "next-intermediate-cert.pem", "next-intermediate-key.pem"} {
		_ = os.Remove(c.path(f))
	}
	return nil
}

func (c *CA) loadRetired() error {
	b, err := os.ReadFile(c.path("retired.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	var rs []retired
	if err := json.Unmarshal(b, &rs); err != nil {
		return fmt.Errorf("ca: retired.json: %w", err)
	}
	for _, r := range rs {
		blk, _ := pem.Decode([]byte(r.CertPEM))
		if blk == nil {
			return errors.New("ca: retired.json: a root is not PEM")
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fmt.Errorf("ca: retired.json: %w", err)
		}
		r.cert = cert
		c.retired = append(c.retired, r)
	}
	return nil
}

// Request is what Sign needs: the CSR and the identity the node is
// entitled to.
type Request struct {
	// CSR is a PKCS#10 request (DER).
	CSR []byte
	// ID is the SPIFFE ID to issue, derived by the caller from the node's
	// resources (never from the CSR).
	ID string
	// Node is the node id the certificate is bound to (its subject
	// CN, with OU NodeOU): the control plane authenticates the sidecar's
	// watch, ACK and renewal by it. Several nodes share one SPIFFE ID (one
	// service account); the node id tells them apart.
	Node string
}

// NodeOU is the subject OU of the certificates Sign issues for a node.
// Operator-supplied client certificates must not carry it.
const NodeOU = "weft-node"

// Issued is a signed certificate with what a sidecar needs beside it.
type Issued struct {
	// Chain is the leaf then any intermediate (DER).
	Chain [][]byte
	Leaf  *x509.Certificate
	// Bundle is the trust bundle now (PEM roots).
	Bundle []*x509.Certificate
	// Signer names the root that signs now.
	Signer string
}

// Sign checks the CSR (its signature, its key) and issues a certificate for
// r.ID valid for the CA's TTL. A CSR that names any URI SAN other than r.ID
// is refused with ErrForeignIdentity; DNS names, e-mails and IPs in the CSR
// are refused too (the certificate carries the SPIFFE ID only).
func (c *CA) Sign(r Request) (*Issued, error) {
	u, err := identity.URIOf(r.ID)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if td, _, _ := identity.ParseID(r.ID); td != c.o.TrustDomain {
		return nil, fmt.Errorf("ca: %s is not in trust domain %q", r.ID, c.o.TrustDomain)
	}
	csr, err := x509.ParseCertificateRequest(r.CSR)
	if err != nil {
		return nil, fmt.Errorf("ca: CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: CSR signature: %w", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: CSR: %w", err)
	}
	for _, want := range csr.URIs {
		if want.String() != r.ID {
			return nil, fmt.Errorf("ca: CSR asks for %s, the node is %s: %w", want, r.ID, ErrForeignIdentity)
		}
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {
		return nil, fmt.Errorf("ca: CSR asks for DNS, e-mail or IP names; an SVID carries only its SPIFFE ID: %w", ErrForeignIdentity)
	}
	subject := pkix.Name{Organization: []string{"weft"}}
	if r.Node != "" {
		subject.OrganizationalUnit, subject.CommonName = []string{NodeOU}, r.Node
	}
	now := time.Now()
	c.promote(now)
	c.mu.RLock()
	a := c.signer
	bundle := c.bundleLocked(now)
	c.mu.RUnlock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              minTime(now.Add(c.o.TTL), a.cert.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, csr.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: signing %s: %w", r.ID, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	chain := [][]byte{der}
	for _, ic := range a.chain {
		chain = append(chain, ic.Raw)
	}
	return &Issued{Chain: chain, Leaf: leaf, Bundle: bundle, Signer: fingerprint(a.root)}, nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return errors.New("ECDSA keys must be P-256 or P-384")
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too small (2048 at least)", k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

// Bundle is the trust bundle: the current root first, then retired roots
// still in their overlap.
func (c *CA) Bundle() (roots []*x509.Certificate, signer string) {
	now := time.Now()
	c.promote(now)
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bundleLocked(now), fingerprint(c.signer.root)
}

// bundleLocked is the signing root, then a rotation's next root, then the
// retired roots still in their overlap.
func (c *CA) bundleLocked(now time.Time) []*x509.Certificate {
	out := []*x509.Certificate{c.signer.root}
	if c.next != nil {
		out = append(out, c.next.root)
	}
	for _, r := range c.retired {
		if now.Before(r.Until) {
			out = append(out, r.cert)
		}
	}
	return out
}

// Rotate starts replacing the root (and intermediate): the new root joins
// the bundle at once and starts signing after the propagation delay; then
// the old root stays in the bundle for the overlap, so certificates it
// signed keep working until their holders renew (sidecars renew as soon as
// they see the signer change). An operator-supplied root cannot be rotated
// here (replace its files and restart). A rotation already pending is
// refused.
func (c *CA) Rotate() error {
	if c.o.RootCertFile != "" {
		return errors.New("ca: the root is operator-supplied; replace its files to rotate it")
	}
	c.promote(time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next != nil {
		return fmt.Errorf("ca: a rotation is already in progress (the new root signs from %s)", c.nextAt.Format(time.RFC3339))
	}
	root, err := c.makeRoot()
	if err != nil {
		return err
	}
	a := root
	if c.o.Intermediate {
		if a, err = c.makeIntermediate(root); err != nil {
			return err
		}
	}
	c.next, c.nextAt = a, time.Now().Add(c.o.Propagation)
	if err := c.saveNextLocked(); err != nil {
		c.next = nil
		return err
	}
	c.log.Info("root CA rotation started: the new root is in the bundle", zap.String("new_signer", fingerprint(root.cert)), zap.Time("signs_from", c.nextAt))
	return nil
}

// Reload reads the CA's files in Dir again and makes them current: another
// control-plane replica rotated the CA and its files were replaced.
func (c *CA) Reload() error {
	n, err := Open(c.o)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.signer, c.retired, c.next, c.nextAt = n.signer, n.retired, n.next, n.nextAt
	c.mu.Unlock()
	c.log.Info("CA reloaded", zap.String("signer", fingerprint(n.signer.root)))
	return nil
}

// promote makes a pending rotation's authority the signer once due, and
// retires the old root for the overlap.
func (c *CA) promote(now time.Time) {
	c.mu.RLock()
	due := c.next != nil && !now.Before(c.nextAt)
	c.mu.RUnlock()
	if !due {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == nil || now.Before(c.nextAt) {
		return
	}
	old := c.signer.root
	keep := []retired{{CertPEM: string(identity.EncodeCertsPEM(old)), Until: now.Add(c.o.Overlap), cert: old}}
	for _, r := range c.retired {
		if now.Before(r.Until) {
			keep = append(keep, r)
		}
	}
	prevSigner, prevRetired := c.signer, c.retired
	c.signer, c.retired, c.next = c.next, keep, nil
	if err := c.saveLocked(); err != nil {
		c.signer, c.retired, c.next = prevSigner, prevRetired, c.signer
		c.log.Error("ca: promoting the new root failed; the old one keeps signing", zap.Error(err))
		return
	}
	c.log.Info("the new root CA signs now", zap.String("signer", fingerprint(c.signer.root)), zap.Time("old_root_trusted_until", keep[0].Until))
}

// fingerprint names a certificate: the first 16 hex digits of its sha256.
func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:8])
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func readPair(certFile, keyFile string) (*authority, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	certs, err := identity.ParseCertsPEM(cb)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate: %v", certFile, err)
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("%s: not PEM", keyFile)
	}
	var key any
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", keyFile, key)
	}
	return &authority{cert: certs[0], key: signer, root: certs[0]}, nil
}

func writePair(certFile, keyFile string, cert *x509.Certificate, key crypto.Signer) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, identity.EncodeCertsPEM(cert), 0o644)
}

// writeFile writes atomically (temp file, fsync, rename).
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Chmod(mode), tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
