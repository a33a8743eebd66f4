package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"
)

// fakeClock is Rotate's clock under the test's control: time moves only
// when the test advances it, and every timer Rotate arms is reported on
// armed, so the test knows Rotate is waiting, and for how long.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	timer chan time.Time // the armed timer, nil when stopped or fired
	due   time.Time
	ticks chan time.Time
	every time.Duration // the ticker's period

	armed chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{
		// A whole second: certificates keep their times to the second.
		now:   time.Unix(1_800_000_000, 0),
		ticks: make(chan time.Time, 1),
		armed: make(chan time.Duration, 1000),
	}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Timer(d time.Duration) (<-chan time.Time, func() bool) {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.timer, c.due = ch, c.now.Add(d)
	c.fireLocked()
	c.mu.Unlock()
	c.armed <- d
	return ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.timer != ch {
			return false
		}
		c.timer = nil
		return true
	}
}

func (c *fakeClock) Ticker(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	c.every = d
	c.mu.Unlock()
	return c.ticks, func() {}
}

func (c *fakeClock) fireLocked() {
	if c.timer != nil && !c.now.Before(c.due) {
		c.timer <- c.now
		c.timer = nil
	}
}

// advance moves time on by d, firing the timer when it falls due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

// tick fires the bundle poll.
func (c *fakeClock) tick() { c.ticks <- c.Now() }

func (c *fakeClock) period() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.every
}

// next is the wait of the timer Rotate arms next.
func (c *fakeClock) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.armed:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("Rotate never armed its next timer")
		return 0
	}
}

// expectWait checks that Rotate's next timer waits want.
func (c *fakeClock) expectWait(t *testing.T, want time.Duration) {
	t.Helper()
	if got := c.next(t); got != want {
		t.Fatalf("Rotate waits %v, want %v", got, want)
	}
}

// stubSigner is a small CA that issues certificates valid for lifetime
// from the fake clock's now, or fails while fail is set.
type stubSigner struct {
	clock    *fakeClock
	lifetime time.Duration
	rootKey  *ecdsa.PrivateKey
	root     *x509.Certificate

	mu     sync.Mutex
	fail   bool
	bundle *Bundle // answered by Sign and FetchBundle
	signer string
	signs  int
}

func newStubSigner(t *testing.T, c *fakeClock, lifetime time.Duration) *stubSigner {
	t.Helper()
	key, root := newRoot(t, "root 1")
	return &stubSigner{clock: c, lifetime: lifetime, rootKey: key, root: root,
		bundle: NewBundle("weft.test", []*x509.Certificate{root}), signer: "root-1"}
}

func newRoot(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4_000_000_000, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, root
}

func (s *stubSigner) set(f func(*stubSigner)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *stubSigner) Sign(_ context.Context, csrDER []byte) (*Issued, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signs++
	if s.fail {
		return nil, errors.New("control plane unavailable")
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	u, _ := url.Parse(WorkloadID("weft.test", "shop", "orders"))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(s.signs + 1)), URIs: []*url.URL{u},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(s.lifetime),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.root, csr.PublicKey, s.rootKey)
	if err != nil {
		return nil, err
	}
	return &Issued{Chain: [][]byte{der}, Bundle: s.bundle, Signer: s.signer}, nil
}

func (s *stubSigner) FetchBundle(context.Context) (*Bundle, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, "", errors.New("control plane unavailable")
	}
	return s.bundle, s.signer, nil
}

func (s *stubSigner) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signs
}

// rotateWith runs src.Rotate on the fake clock until the test ends.
func rotateWith(t *testing.T, src *Source, c *fakeClock, o RotateOptions) {
	t.Helper()
	o.clock = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Rotate(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Rotate returned %v, want context.Canceled", err)
		}
	})
}

// TestRotateDefaultBackoff: with no options, a failing signer is retried
// after 500ms, doubling up to 30s, and the bundle is polled every 30s.
func TestRotateDefaultBackoff(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, time.Hour)
	sg.set(func(s *stubSigner) { s.fail = true })
	rotateWith(t, NewSource(), c, RotateOptions{Signer: sg})

	c.expectWait(t, 0) // the first renewal is at once
	for _, want := range []time.Duration{
		500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second,
	} {
		c.expectWait(t, want)
		c.advance(want)
	}
	c.next(t)
	if got := c.period(); got != 30*time.Second {
		t.Errorf("bundle poll every %v, want 30s", got)
	}
	if got := sg.calls(); got != 9 {
		t.Errorf("%d Sign calls, want 9", got)
	}
}

// TestRotateRetryBounds: MinRetry and MaxRetry bound the backoff; a
// maximum under the minimum is raised to max(30s, minimum).
func TestRotateRetryBounds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      RotateOptions
		waits     []time.Duration
		pollEvery time.Duration
	}{
		{name: "max equals min", opts: RotateOptions{MinRetry: 2 * time.Second, MaxRetry: 2 * time.Second, BundleInterval: time.Minute},
			waits: []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}, pollEvery: time.Minute},
		{name: "max under min", opts: RotateOptions{MinRetry: time.Minute, MaxRetry: time.Second},
			waits: []time.Duration{time.Minute, time.Minute}, pollEvery: 30 * time.Second},
		{name: "no max, min over 30s", opts: RotateOptions{MinRetry: time.Minute},
			waits: []time.Duration{time.Minute, time.Minute}, pollEvery: 30 * time.Second},
		{name: "no max", opts: RotateOptions{MinRetry: 10 * time.Second, BundleInterval: -time.Second},
			waits: []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}, pollEvery: 30 * time.Second},
		{name: "wide", opts: RotateOptions{MinRetry: time.Second, MaxRetry: 5 * time.Second, BundleInterval: time.Nanosecond},
			waits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}, pollEvery: time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeClock()
			sg := newStubSigner(t, c, time.Hour)
			sg.set(func(s *stubSigner) { s.fail = true })
			o := tc.opts
			o.Signer = sg
			rotateWith(t, NewSource(), c, o)
			c.expectWait(t, 0)
			for _, want := range tc.waits {
				c.expectWait(t, want)
				c.advance(want)
			}
			c.next(t)
			if got := c.period(); got != tc.pollEvery {
				t.Errorf("bundle poll every %v, want %v", got, tc.pollEvery)
			}
		})
	}
}

// TestRotateRenewsAtHalfLife: a certificate is renewed halfway through its
// life, each time with a new key, and Renewed sees each one.
func TestRotateRenewsAtHalfLife(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, 100*time.Second)
	src := NewSource()
	renewed := make(chan *SVID, 10)
	rotateWith(t, src, c, RotateOptions{Signer: sg, Renewed: func(v *SVID) { renewed <- v }})

	c.expectWait(t, 0)
	c.expectWait(t, 50*time.Second)
	first := <-renewed
	if src.SVID() != first {
		t.Fatal("the source does not serve the renewed SVID")
	}
	select {
	case <-src.Ready():
	default:
		t.Fatal("the source is not ready after the first renewal")
	}
	c.advance(49 * time.Second) // not yet due
	c.advance(time.Second)
	c.expectWait(t, 50*time.Second)
	second := <-renewed
	if src.SVID() != second || second == first {
		t.Fatal("the second renewal was not installed")
	}
	if first.Certificate.PrivateKey.(*ecdsa.PrivateKey).Equal(second.Certificate.PrivateKey) {
		t.Error("the renewal reused the private key")
	}
	if got := sg.calls(); got != 2 {
		t.Errorf("%d Sign calls, want 2", got)
	}
}

// TestRotateRetryNeverOutlivesTheCertificate: while a certificate serves,
// the retry delay is at most a quarter of its remaining life, and at least
// MinRetry.
func TestRotateRetryNeverOutlivesTheCertificate(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, 100*time.Second)
	rotateWith(t, NewSource(), c, RotateOptions{Signer: sg, MinRetry: 4 * time.Second, MaxRetry: time.Hour})

	c.expectWait(t, 0)
	c.expectWait(t, 50*time.Second)
	sg.set(func(s *stubSigner) { s.fail = true })
	c.advance(50 * time.Second)
	// remaining life: 50s, 46s, 38s, 28.5s, ...; backoff 4s, 8s, 16s, 32s, ...
	for _, want := range []time.Duration{
		4 * time.Second,         // backoff (50s/4 is longer)
		8 * time.Second,         // backoff (46s/4 is longer)
		9500 * time.Millisecond, // 38s/4
		7125 * time.Millisecond, // 28.5s/4
		5343750 * time.Microsecond,
		4007812500 * time.Nanosecond,
		4 * time.Second, // 12.0234375s/4 is under MinRetry
	} {
		c.expectWait(t, want)
		c.advance(want)
	}
	c.next(t)
}

// TestRotateBundlePoll: a polled bundle is installed when its version
// changes (kept as is otherwise), a failed poll changes nothing, and a new
// signing root renews the certificate at once.
func TestRotateBundlePoll(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, 100*time.Second)
	src := NewSource()
	rotateWith(t, src, c, RotateOptions{Signer: sg})
	c.expectWait(t, 0)
	c.expectWait(t, 50*time.Second)
	b1 := src.Bundle()
	if b1 != sg.bundle {
		t.Fatal("the issued bundle was not installed")
	}

	// The same roots in a new value: kept, and the renewal stays due in 50s.
	sg.set(func(s *stubSigner) { s.bundle = NewBundle("weft.test", s.bundle.Roots) })
	c.tick()
	c.expectWait(t, 50*time.Second)
	if src.Bundle() != b1 {
		t.Error("an unchanged bundle was reinstalled")
	}

	// A failed poll keeps the bundle and the schedule.
	sg.set(func(s *stubSigner) { s.fail = true })
	c.advance(10 * time.Second)
	c.tick()
	c.expectWait(t, 40*time.Second)
	if src.Bundle() != b1 {
		t.Error("a failed poll changed the bundle")
	}

	// A second root (CA rotation begins): installed, no renewal yet.
	_, root2 := newRoot(t, "root 2")
	var b2 *Bundle
	sg.set(func(s *stubSigner) {
		s.fail = false
		b2 = NewBundle("weft.test", []*x509.Certificate{s.root, root2})
		s.bundle = b2
	})
	c.tick()
	c.expectWait(t, 40*time.Second)
	if src.Bundle() != b2 {
		t.Error("a changed bundle was not installed")
	}
	if got := sg.calls(); got != 1 {
		t.Errorf("%d Sign calls, want 1", got)
	}

	// The CA signs with the new root: renew now.
	sg.set(func(s *stubSigner) { s.signer = "root-2" })
	c.tick()
	c.expectWait(t, 0)
	c.expectWait(t, 50*time.Second)
	if got := sg.calls(); got != 2 {
		t.Errorf("%d Sign calls, want 2", got)
	}
}

// TestRotatePollBeforeTheFirstCertificate: a bundle polled before any
// certificate was issued is installed, and does not cut short the retry
// delay (there is no signing root to compare with yet).
func TestRotatePollBeforeTheFirstCertificate(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, 100*time.Second)
	sg.set(func(s *stubSigner) { s.fail = true })
	src := NewSource()
	rotateWith(t, src, c, RotateOptions{Signer: sg, MinRetry: 8 * time.Second})
	c.expectWait(t, 0)
	c.expectWait(t, 8*time.Second)

	sg.set(func(s *stubSigner) { s.fail = false })
	c.tick()
	c.expectWait(t, 8*time.Second)
	if src.Bundle() != sg.bundle {
		t.Error("the polled bundle was not installed")
	}
	if src.SVID() != nil {
		t.Error("an SVID appeared without a renewal")
	}
	select {
	case <-src.Ready():
		t.Error("the source is ready without an SVID")
	default:
	}
	c.advance(8 * time.Second)
	c.expectWait(t, 50*time.Second)
	select {
	case <-src.Ready():
	default:
		t.Error("the source is not ready with an SVID and a bundle")
	}
}

// TestRenewInstallsTheIssuedBundleOnlyWhenItDiffers: the bundle that comes
// with a certificate replaces the current one when its version or its
// roots differ.
func TestRenewInstallsTheIssuedBundleOnlyWhenItDiffers(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, 100*time.Second)
	src := NewSource()
	ctx := context.Background()
	renew := func() {
		t.Helper()
		if _, _, err := src.renew(ctx, sg); err != nil {
			t.Fatal(err)
		}
	}
	renew()
	b1 := src.Bundle()

	sg.set(func(s *stubSigner) { s.bundle = NewBundle("weft.test", s.bundle.Roots) })
	renew()
	if src.Bundle() != b1 {
		t.Error("an identical bundle replaced the current one")
	}

	_, other := newRoot(t, "other")
	for _, tc := range []struct {
		name  string
		roots []*x509.Certificate
	}{
		{"another root", []*x509.Certificate{other}},
		{"one more root", []*x509.Certificate{b1.Roots[0], other}},
		{"no root", nil},
	} {
		// The same version string over other roots: the roots decide.
		b := &Bundle{TrustDomain: "weft.test", Roots: tc.roots, Version: b1.Version}
		sg.set(func(s *stubSigner) { s.bundle = b })
		renew()
		if src.Bundle() != b {
			t.Errorf("%s: the issued bundle was not installed", tc.name)
		}
		src.SetBundle(b1)
	}
}

func TestReadyNeedsBothSVIDAndBundle(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, time.Hour)
	tmp := NewSource()
	v, _, err := tmp.renew(context.Background(), sg)
	if err != nil {
		t.Fatal(err)
	}
	ready := func(s *Source) bool {
		select {
		case <-s.Ready():
			return true
		default:
			return false
		}
	}

	a := NewSource()
	a.SetSVID(v)
	if ready(a) {
		t.Error("ready with an SVID and no bundle")
	}
	a.SetBundle(sg.bundle)
	if !ready(a) {
		t.Error("not ready with an SVID and a bundle")
	}
	a.SetBundle(sg.bundle) // closing again must not panic

	b := NewSource()
	b.SetBundle(sg.bundle)
	if ready(b) {
		t.Error("ready with a bundle and no SVID")
	}
	b.SetSVID(v)
	if !ready(b) {
		t.Error("not ready with a bundle and an SVID")
	}
}

// TestNewSVIDParsesTheLeaf: a key pair without its parsed leaf (as
// tls.X509KeyPair made it before Go 1.23) gets one.
func TestNewSVIDParsesTheLeaf(t *testing.T) {
	c := newFakeClock()
	sg := newStubSigner(t, c, time.Hour)
	v, _, err := NewSource().renew(context.Background(), sg)
	if err != nil {
		t.Fatal(err)
	}
	pair := &tls.Certificate{Certificate: v.Certificate.Certificate, PrivateKey: v.Certificate.PrivateKey}
	got, err := NewSVID(pair)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != v.ID || !got.NotAfter.Equal(v.NotAfter) || pair.Leaf == nil {
		t.Errorf("NewSVID = %+v, leaf %v; want the ID and times of %+v", got, pair.Leaf, v)
	}
	if _, err := NewSVID(&tls.Certificate{Certificate: [][]byte{[]byte("not DER")}}); err == nil {
		t.Error("NewSVID accepted a certificate that does not parse")
	}
}
