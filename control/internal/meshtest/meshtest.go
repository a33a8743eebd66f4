// Package meshtest runs the real parts of a mesh on loopback for the control
// plane's tests: fasthttp upstreams that answer with their name and count
// hits, sidecars (a real proxy.Proxy kept in sync by control/client), a
// control plane server, and Wasm modules built from testdata with wat2wasm.
// Test-only: it must not be imported by non-test code.
package meshtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/loopback"
)

// Upstream is a real fasthttp server on 127.0.0.1 answering 200 with its
// name.
type Upstream struct {
	Name string
	Addr string
	Hits atomic.Int64
	srv  *fasthttp.Server
}

// StartUpstream starts an upstream, closed when the test ends.
func StartUpstream(t testing.TB, name string) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Upstream{Name: name, Addr: ln.Addr().String()}
	u.srv = &fasthttp.Server{NoDefaultServerHeader: true, CloseOnShutdown: true, Handler: func(ctx *fasthttp.RequestCtx) {
		u.Hits.Add(1)
		ctx.SetBodyString(u.Name)
	}}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() { _ = u.srv.Shutdown() })
	return u
}

// Logger is a test logger at warn level (info with -v and WEFT_TEST_LOG=1).
func Logger(t testing.TB) *zap.Logger {
	lvl := zap.WarnLevel
	if os.Getenv("WEFT_TEST_LOG") != "" {
		lvl = zap.DebugLevel
	}
	return zaptest.NewLogger(t, zaptest.Level(lvl))
}

// controls are the running test control planes by URL, so Do and
// StartSidecar can call them as an operator and as a node would: trusting
// their CA and with their admin token.
var (
	controlsMu sync.Mutex
	controls   = map[string]*server.Server{}
	// adminTokens are the admin tokens replicas on one etcd (endpoints
	// and prefix) share.
	adminTokens = map[string]string{}
)

func controlAt(url string) *server.Server {
	controlsMu.Lock()
	defer controlsMu.Unlock()
	for base, s := range controls {
		if url == base || strings.HasPrefix(url, base+"/") {
			return s
		}
	}
	return nil
}

// Roots are a control plane's CA roots (what its ca.pem holds).
func Roots(t testing.TB, s *server.Server) []*x509.Certificate {
	t.Helper()
	roots, err := client.LoadCA(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	return roots
}

// APIClient is an HTTP client trusting the control plane's CA (presenting
// no certificate).
func APIClient(t testing.TB, s *server.Server) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(Roots(t, s), nil)}}
}

// StartControl starts a control plane with fast settings for tests, with
// its TLS API on (unless o.Insecure).
func StartControl(t testing.TB, o server.Options) *server.Server {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = Logger(t)
	}
	if o.Debounce == 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.ScrapeInterval == 0 {
		o.ScrapeInterval = time.Hour // tests scrape with ScrapeNow
	}
	if o.WatchTimeout == 0 {
		o.WatchTimeout = 5 * time.Second
	}
	// Replicas on one etcd share one admin token, made by the first: give
	// the others a copy, as an operator would, so Do authenticates to
	// each with its own AdminToken.
	shareKey := ""
	if o.Etcd != nil {
		prefix := o.EtcdPrefix
		if prefix == "" {
			prefix = "/weft/"
		}
		eps := append([]string(nil), o.Etcd.Endpoints()...)
		sort.Strings(eps)
		shareKey = strings.Join(eps, ",") + " " + prefix
		controlsMu.Lock()
		tok := adminTokens[shareKey]
		controlsMu.Unlock()
		path := filepath.Join(o.DataDir, "admin.token")
		if _, err := os.Stat(path); tok != "" && errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := server.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	controlsMu.Lock()
	controls[s.URL()] = s
	if shareKey != "" && s.AdminToken() != "" {
		adminTokens[shareKey] = s.AdminToken()
	}
	controlsMu.Unlock()
	t.Cleanup(func() {
		controlsMu.Lock()
		defer controlsMu.Unlock()
		if controls[s.URL()] == s {
			delete(controls, s.URL())
		}
	})
	return s
}

// FreeAddr returns a loopback address with a port free right now, below
// the ephemeral range (loopback.FreeAddr).
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Sidecar is a real proxy kept in sync with a control plane.
type Sidecar struct {
	ID       string
	Outbound string // the outbound listener's address, as the mesh declares it
	Proxy    *proxy.Proxy
	Admin    *admin.Server

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// SidecarOptions configure StartSidecar.
type SidecarOptions struct {
	ID, URL, CacheDir, Outbound string
	// WithAdmin starts an admin server on 127.0.0.1:0 and reports it.
	WithAdmin bool
	// Identity, when set, is the sidecar's node identity (kept fresh by
	// the caller); by default StartSidecar mints a join token for the node
	// as the control plane's admin and joins with it, as weft proxy does.
	Identity *identity.Source
	// Roots are the CA roots to trust (default: the control plane's).
	Roots []*x509.Certificate
	// MinBackoff and MaxBackoff override the client's short test backoff.
	MinBackoff, MaxBackoff time.Duration
	// Logger, when set, is the sidecar's logger (default Logger(t)).
	Logger *zap.Logger
	// WasmCacheDir is the proxy's wazero compilation cache (weft proxy
	// -wasm-cache); "" compiles every module in memory.
	WasmCacheDir string
}

// Join mints a join token for node (as the control plane's admin) and
// starts keeping a node identity with it, until the test ends. It does not
// wait for the certificate (the node's Sidecar may not exist yet).
func Join(t testing.TB, s *server.Server, node string) *identity.Source {
	t.Helper()
	tr, err := s.IssueToken(node, 0, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	return JoinWith(t, s.URL(), Roots(t, s), node, tr.Token)
}

// JoinWith keeps a node identity obtained with a join token from the
// control plane at url, trusting roots, until the test ends.
func JoinWith(t testing.TB, url string, roots []*x509.Certificate, node, token string) *identity.Source {
	t.Helper()
	src := identity.NewSource()
	ic := &client.IdentityClient{URL: url, NodeID: node, Token: token, Source: src,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, src)}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Rotate(ctx, identity.RotateOptions{Signer: ic, Logger: Logger(t).Named(node + ".identity"),
			BundleInterval: time.Second, MinRetry: 20 * time.Millisecond, MaxRetry: 300 * time.Millisecond})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return src
}

// StartSidecar starts a proxy and its control client; both stop when the
// test ends (or at Stop). Against a TLS control plane the sidecar joins
// with a join token and then watches over mTLS with its node certificate.
func StartSidecar(t testing.TB, o SidecarOptions) *Sidecar {
	t.Helper()
	if o.Logger == nil {
		o.Logger = Logger(t)
	}
	log := o.Logger.With(zap.String("sidecar", o.ID))
	var tc *tls.Config
	if cp := controlAt(o.URL); cp != nil && !cp.Insecure() {
		if o.Identity == nil {
			o.Identity = Join(t, cp, o.ID)
		}
		if o.Roots == nil {
			o.Roots = Roots(t, cp)
		}
	}
	if o.Identity != nil {
		tc = client.TLSConfig(o.Roots, o.Identity)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := proxy.New(ctx, proxy.Options{Logger: log, DrainTimeout: time.Second, Identity: o.Identity, WasmCacheDir: o.WasmCacheDir})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sc := &Sidecar{ID: o.ID, Outbound: o.Outbound, Proxy: p, cancel: cancel, done: make(chan struct{})}
	adminAddr := ""
	if o.WithAdmin {
		a, err := admin.Start("127.0.0.1:0", p, p.Metrics().Registry(), log)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		sc.Admin = a
		adminAddr = a.Addr().String()
	}
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 300*time.Millisecond
	}
	go func() {
		defer close(sc.done)
		_ = client.Run(ctx, client.Options{
			URL: o.URL, NodeID: o.ID, TLS: tc, CacheDir: o.CacheDir, Applier: p, Logger: log, AdminAddr: adminAddr,
			Wait: 5 * time.Second, MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff,
		})
	}()
	t.Cleanup(sc.Stop)
	return sc
}

// Stop ends the client, the admin server and the proxy.
func (s *Sidecar) Stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		if s.Admin != nil {
			_ = s.Admin.Close(context.Background())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Proxy.Shutdown(ctx)
	})
}

// HTTP is a client for requests through sidecars (no connection reuse
// across tests).
var HTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// Get sends GET path with the Host header host through the sidecar's
// outbound listener and returns the status and body.
func (s *Sidecar) Get(host, path string) (int, string, http.Header, error) {
	addr := s.Outbound
	if a := s.Proxy.ListenerAddr("outbound"); a != nil {
		addr = a.String()
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	req.Host = host
	resp, err := HTTP.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// Eventually polls cond every 10ms until it holds or 15s pass.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	wasmMu    sync.Mutex
	wasmCache = map[string][]byte{}
)

// Wasm builds testdata/NAME.wat (relative to the control directory, given
// as dir) with wat2wasm and returns the module; it skips the test when
// wabt is not installed.
func Wasm(t testing.TB, dir, name string) []byte {
	t.Helper()
	wasmMu.Lock()
	defer wasmMu.Unlock()
	if b, ok := wasmCache[name]; ok {
		return b
	}
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm (wabt) is not installed: apt-get install -y wabt")
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	if b, err := exec.Command(bin, filepath.Join(dir, "testdata", name+".wat"), "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	wasmCache[name] = b
	return b
}

// Do sends an API request with a body and returns the status and body.
// To a control plane started by StartControl it goes over TLS trusting its
// CA, as the bootstrap admin unless hdr sets Authorization ("" sends
// none).
func Do(t testing.TB, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	hc := HTTP
	if cp := controlAt(url); cp != nil && !cp.Insecure() {
		hc = APIClient(t, cp)
		defer hc.CloseIdleConnections()
		req.Header.Set("Authorization", "Bearer "+cp.AdminToken())
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Sprintf is fmt.Sprintf, for building YAML fixtures.
func Sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
