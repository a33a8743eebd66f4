package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Issued is a Signer's answer to a CSR.
type Issued struct {
	// Chain is the certificate chain, DER, leaf first.
	Chain [][]byte
	// Bundle is the trust bundle in force when the certificate was issued.
	Bundle *Bundle
	// Signer names the root that signs new certificates now; when a later
	// bundle names another one (a CA rotation), the SVID is renewed at once.
	Signer string
}

// Signer gets certificates signed and trust bundles fetched (the control
// plane client is one). Implementations must be safe for concurrent use.
type Signer interface {
	// Sign sends a PKCS#10 CSR (DER) and returns the issued chain.
	Sign(ctx context.Context, csrDER []byte) (*Issued, error)
	// FetchBundle returns the current trust bundle and signer name.
	FetchBundle(ctx context.Context) (*Bundle, string, error)
}

// RotateOptions configure Source.Rotate.
type RotateOptions struct {
	Signer Signer
	Logger *zap.Logger
	// BundleInterval is how often the bundle is polled (default 30s).
	BundleInterval time.Duration
	// MinRetry and MaxRetry bound the delay after a failed renewal
	// (defaults 500ms and 30s).
	MinRetry, MaxRetry time.Duration
	// Renewed, when set, is called after each successful renewal.
	Renewed func(*SVID)

	// clock is the time source (tests substitute a fake one; nil is the
	// real clock).
	clock clock
}

// clock is what Rotate needs of time: the present, a one-shot timer and a
// ticker, each with the function that stops it.
type clock interface {
	Now() time.Time
	Timer(d time.Duration) (<-chan time.Time, func() bool)
	Ticker(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

func (realClock) Ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Rotate keeps the source's SVID fresh until ctx ends: it obtains one at
// once, then renews at half its lifetime with a new private key (generated
// here; only the CSR leaves the process). It polls the trust bundle and
// installs changes, renewing at once when the signing root changed. A
// failed renewal is retried with backoff while the current SVID serves.
// Rotate returns ctx's error.
func (s *Source) Rotate(ctx context.Context, o RotateOptions) error {
	if o.Signer == nil {
		return errors.New("identity: Rotate needs a Signer")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.BundleInterval <= 0 {
		o.BundleInterval = 30 * time.Second
	}
	if o.MinRetry <= 0 {
		o.MinRetry = 500 * time.Millisecond
	}
	if o.MaxRetry < o.MinRetry {
		o.MaxRetry = max(30*time.Second, o.MinRetry)
	}
	clk := o.clock
	if clk == nil {
		clk = realClock{}
	}
	signer := ""
	renewAt := clk.Now()
	failures := 0
	poll, stopPoll := clk.Ticker(o.BundleInterval)
	defer stopPoll()
	for {
		wait := renewAt.Sub(clk.Now())
		if wait < 0 {
			wait = 0
		}
		fired, stop := clk.Timer(wait)
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-poll:
			stop()
			b, sg, err := o.Signer.FetchBundle(ctx)
			if err != nil {
				o.Logger.Warn("trust bundle poll failed; keeping the bundle in force", zap.Error(err))
				continue
			}
			if cur := s.Bundle(); cur == nil || cur.Version != b.Version {
				s.SetBundle(b)
				o.Logger.Info("trust bundle changed", zap.String("version", b.Version), zap.Int("roots", len(b.Roots)))
			}
			if signer != "" && sg != signer {
				o.Logger.Info("the CA's signing root changed: renewing the certificate now")
				renewAt = clk.Now()
			}
		case <-fired:
			v, sg, err := s.renew(ctx, o.Signer)
			if err != nil {
				d := o.MinRetry << min(failures, 16)
				d = min(d, o.MaxRetry)
				if cur := s.SVID(); cur != nil {
					// Never wait past the current certificate's end.
					d = min(d, max(cur.NotAfter.Sub(clk.Now())/4, o.MinRetry))
				}
				failures++
				o.Logger.Warn("certificate renewal failed; retrying", zap.Error(err), zap.Int("attempt", failures), zap.Duration("retry_in", d))
				renewAt = clk.Now().Add(d)
				continue
			}
			failures = 0
			signer = sg
			// Half of the remaining life (NotBefore is backdated for clock
			// skew, so it does not count).
			now := clk.Now()
			renewAt = now.Add(v.NotAfter.Sub(now) / 2)
			o.Logger.Info("certificate renewed", zap.String("spiffe_id", v.ID), zap.Time("not_after", v.NotAfter), zap.Time("renew_at", renewAt))
			if o.Renewed != nil {
				o.Renewed(v)
			}
		}
	}
}

// renew generates a key, gets it certified and installs the result.
func (s *Source) renew(ctx context.Context, sg Signer) (*SVID, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("identity: generating a key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, "", fmt.Errorf("identity: making the CSR: %w", err)
	}
	is, err := sg.Sign(ctx, csr)
	if err != nil {
		return nil, "", err
	}
	if len(is.Chain) == 0 || is.Bundle == nil {
		return nil, "", errors.New("identity: the signer returned no certificate or no bundle")
	}
	leaf, err := x509.ParseCertificate(is.Chain[0])
	if err != nil {
		return nil, "", fmt.Errorf("identity: issued certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, "", errors.New("identity: the issued certificate is not for our key")
	}
	v, err := NewSVID(&tls.Certificate{Certificate: is.Chain, PrivateKey: key, Leaf: leaf})
	if err != nil {
		return nil, "", fmt.Errorf("identity: issued certificate: %w", err)
	}
	if cur := s.Bundle(); cur == nil || cur.Version != is.Bundle.Version || !sameRoots(cur, is.Bundle) {
		s.SetBundle(is.Bundle)
	}
	s.SetSVID(v)
	return v, is.Signer, nil
}

func sameRoots(a, b *Bundle) bool {
	if len(a.Roots) != len(b.Roots) {
		return false
	}
	for i := range a.Roots {
		if !bytes.Equal(a.Roots[i].Raw, b.Roots[i].Raw) {
			return false
		}
	}
	return true
}
