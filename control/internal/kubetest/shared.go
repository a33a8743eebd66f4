package kubetest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// One API server per test binary: a start costs seconds, so a package's
// tests share it (each in namespaces of its own) through Shared, and Main
// stops it when the tests end.
var shared struct {
	mu  sync.Mutex
	env *Env
	tb  *processTB
	err string
}

// Main runs a package's tests and then stops the shared API server. Call it
// from TestMain: func TestMain(m *testing.M) { kubetest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if shared.tb != nil {
		shared.tb.cleanup()
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Shared returns the test binary's API server, started at the first call
// (the package's TestMain must call Main, which stops it). Methods of the
// returned Env fail t. Without the binary, t is skipped with the install
// command; a server that did not start fails every test that asks for it.
func Shared(t testing.TB) *Env {
	t.Helper()
	if Binary() == "" {
		t.Skipf("kube-apiserver %s is not installed: run %q (about 12 minutes the first time) or set WEFT_KUBE_APISERVER", Version, InstallCommand)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.env == nil && shared.err == "" {
		shared.tb = &processTB{}
		func() {
			defer func() {
				if r := recover(); r != nil {
					if f, ok := r.(processFatal); ok {
						shared.err = string(f)
						return
					}
					panic(r)
				}
			}()
			shared.env = Start(shared.tb)
		}()
	}
	if shared.err != "" {
		t.Fatalf("the shared kube-apiserver did not start: %s\n%s", shared.err, shared.tb.logs())
	}
	e := *shared.env
	e.t = t
	return &e
}

// processTB lives as long as the test binary: what Start registers with
// Cleanup runs in Main.
type processTB struct {
	testing.TB // nil: only the methods below are used by Start

	mu       sync.Mutex
	cleanups []func()
	log      []string
	failed   bool
}

type processFatal string

func (p *processTB) Helper() {}

func (p *processTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *processTB) TempDir() string {
	d, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func (p *processTB) Logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, fmt.Sprintf(format, args...))
}

func (p *processTB) Log(args ...any) { p.Logf("%s", fmt.Sprint(args...)) }

func (p *processTB) Fatalf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(processFatal(fmt.Sprintf(format, args...)))
}

func (p *processTB) Fatal(args ...any) { p.Fatalf("%s", fmt.Sprint(args...)) }

func (p *processTB) Errorf(format string, args ...any) { p.Fatalf(format, args...) }

func (p *processTB) Skipf(format string, args ...any) { p.Fatalf("skipped: "+format, args...) }

func (p *processTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *processTB) Name() string { return "kubetest-shared" }

func (p *processTB) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// cleanup runs the registered functions, last first, as testing does.
func (p *processTB) cleanup() {
	p.mu.Lock()
	fs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

var nsSeq struct {
	mu sync.Mutex
	n  int
}

// NewNamespace creates a namespace of its own for the calling test
// (PREFIX-N, unique in the test binary) and returns its name. Namespaces
// are not deleted: no namespace controller runs to finish a deletion.
func (e *Env) NewNamespace(prefix string) string {
	e.t.Helper()
	nsSeq.mu.Lock()
	nsSeq.n++
	name := fmt.Sprintf("%s-%d", prefix, nsSeq.n)
	nsSeq.mu.Unlock()
	e.EnsureNamespace(name)
	return name
}

// SignServiceAccountToken signs claims with the API server's
// service-account key, as the TokenRequest API would: for tokens the API
// will not issue (already expired, for a service account that does not
// exist). Standard claims not given are filled in: iss (the server's
// issuer), iat and nbf (now).
func (e *Env) SignServiceAccountToken(claims map[string]any) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Dir, "sa.key"))
	if err != nil {
		e.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		e.t.Fatal("sa.key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		e.t.Fatal(err)
	}
	now := time.Now().Unix()
	c := map[string]any{"iss": Issuer, "iat": now, "nbf": now}
	for k, v := range claims {
		c[k] = v
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	sum := sha256.Sum256(pub)
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": base64.RawURLEncoding.EncodeToString(sum[:])})
	body, _ := json.Marshal(c)
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	h := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		e.t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
