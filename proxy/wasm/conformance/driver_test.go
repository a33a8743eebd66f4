package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/wasm"
)

// idHeader carries a per-request id from the test client: the upstream files
// what it saw under it and the proxy its filter trace. Guests ignore it.
const idHeader = "x-conformance-id"

// callbackTimeout is generous on purpose: the suite checks behaviour, not
// speed, and runs under -race on a shared 2-core machine.
const callbackTimeout = 5 * time.Second

var (
	runtimeOnce sync.Once
	sharedRT    *wasm.Runtime
	runtimeErr  error
	seq         atomic.Int64
)

// TestMain fails the run when goroutines are left 10s after the tests
// passed and every plugin, server and the shared runtime closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settle{m}, leakOptions...)
}

// leakOptions exempt fasthttp's own package-level goroutines, started once
// per process and never stopped: not leaks of ours.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
}

// settle runs the tests, closes the shared runtime and, when both went
// well, gives goroutines up to 10s to end before goleak's own short retries
// look for leaks.
type settle struct{ m *testing.M }

// Run runs the tests, closes the runtime and waits for goroutines to end.
func (s settle) Run() int {
	code := s.m.Run()
	if sharedRT != nil {
		if err := sharedRT.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "closing the Wasm runtime:", err)
			code = 1
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for code == 0 && goleak.Find(leakOptions...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}

// runtime returns the Runtime every test shares (so each module compiles
// once per process). Its compilation cache lives under os.TempDir(), so
// later runs skip wazero's compile of the Go guests. WEFT_CONFORMANCE_LOG=1
// shows the host's (and guests') logs on stderr.
func runtime(t testing.TB) *wasm.Runtime {
	t.Helper()
	runtimeOnce.Do(func() {
		log := zap.NewNop()
		if os.Getenv("WEFT_CONFORMANCE_LOG") != "" {
			log, _ = zap.NewDevelopment()
		}
		sharedRT, runtimeErr = wasm.NewRuntime(context.Background(), wasm.RuntimeOptions{
			CacheDir: compileCacheDir(),
			Logger:   log,
		})
	})
	if runtimeErr != nil {
		t.Fatalf("NewRuntime: %v", runtimeErr)
	}
	return sharedRT
}

// compileCacheDir is wazero's compilation cache for the suite.
func compileCacheDir() string { return filepath.Join(os.TempDir(), "weft-conformance-wazero") }

// unique returns name with a process-wide sequence number: plugin names key
// guest metrics and VM ids key shared data, both of which outlive a plugin,
// so every load gets its own (go test -count=N stays correct).
func unique(name string) string { return fmt.Sprintf("%s-%d", name, seq.Add(1)) }

// loadPlugin loads spec (Name/VMID made unique unless set) with env and
// closes it when the test ends.
func loadPlugin(t testing.TB, spec wasm.PluginSpec, env wasm.Env) *wasm.Plugin {
	t.Helper()
	if spec.Name == "" {
		spec.Name = unique("plugin")
	}
	if spec.VMID == "" {
		spec.VMID = unique("vm")
	}
	if spec.CallbackTimeout == 0 {
		spec.CallbackTimeout = callbackTimeout
	}
	if spec.PoolSize == 0 {
		spec.PoolSize = 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := runtime(t).Load(ctx, spec, env)
	if err != nil {
		t.Fatalf("Load(%s): %v", spec.Name, err)
	}
	t.Cleanup(p.Close)
	return p
}

// goGuest builds a Go SDK guest (once per process).
func goGuest(t testing.TB, name string) []byte { return guestbuild.GoSDK(t, name) }

// guestIn builds guest name in lang: "go" (gosdk/NAME, the public Go SDK),
// "c" (c/NAME.c over sdk/c/proxy_wasm.h) or "weft" (weftsdk/NAME, Weft's
// own Go SDK), its twins for issue 17's features.
func guestIn(t testing.TB, lang, name string) []byte {
	switch lang {
	case "c":
		return guestbuild.C(t, name)
	case "weft":
		return guestbuild.WeftSDK(t, name)
	}
	return goGuest(t, name)
}

// seenRequest is a request as the upstream server read it off the wire.
type seenRequest struct {
	Method, URI, Host string
	Header            map[string][]string // lower-case names
	ContentLength     int                 // from the Content-Length header, -1 if none
	Body              string
}

// Get returns the first value of a header, "" when absent.
func (r *seenRequest) Get(name string) string {
	if v := r.Header[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Has reports whether the header was present.
func (r *seenRequest) Has(name string) bool { _, ok := r.Header[strings.ToLower(name)]; return ok }

// backend is a real upstream fasthttp server on 127.0.0.1 that files every
// request it receives by idHeader.
type backend struct {
	Addr    string
	handler fasthttp.RequestHandler

	mu    sync.Mutex
	seen  map[string]*seenRequest
	count int
}

// defaultUpstream answers 200 with a few headers response filters edit and a
// body naming the path.
func defaultUpstream(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(200)
	ctx.Response.Header.Set("Content-Type", "text/plain")
	ctx.Response.Header.Set("X-Upstream-Secret", "s3cret")
	ctx.Response.Header.Set("X-Upstream-Version", "v1")
	ctx.SetBodyString("hello from upstream at " + string(ctx.Path()))
}

// startBackend serves handler (defaultUpstream when nil) until the test ends.
func startBackend(t testing.TB, handler fasthttp.RequestHandler) *backend {
	t.Helper()
	if handler == nil {
		handler = defaultUpstream
	}
	b := &backend{handler: handler, seen: make(map[string]*seenRequest)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.Addr = ln.Addr().String()
	srv := &fasthttp.Server{Handler: b.serve, NoDefaultServerHeader: true, NoDefaultDate: true, MaxIdleWorkerDuration: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return b
}

func (b *backend) serve(ctx *fasthttp.RequestCtx) {
	r := &seenRequest{
		Method:        string(ctx.Method()),
		URI:           string(ctx.RequestURI()),
		Host:          string(ctx.Host()),
		Header:        map[string][]string{},
		ContentLength: ctx.Request.Header.ContentLength(),
		Body:          string(ctx.PostBody()),
	}
	if ctx.Request.Header.Peek("Content-Length") == nil {
		r.ContentLength = -1
	}
	for k, v := range ctx.Request.Header.All() {
		name := strings.ToLower(string(k))
		r.Header[name] = append(r.Header[name], string(v))
	}
	b.mu.Lock()
	b.seen[r.Get(idHeader)] = r
	b.count++
	b.mu.Unlock()
	b.handler(ctx)
}

// Seen returns the request the upstream received with the given id, or nil.
func (b *backend) Seen(id string) *seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[id]
}

// Count is how many requests the upstream received.
func (b *backend) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// clusters implements wasm.Upstream over real servers, one
// fasthttp.HostClient per cluster name.
type clusters struct {
	mu sync.Mutex
	m  map[string]*fasthttp.HostClient
}

var _ wasm.Upstream = (*clusters)(nil)

func newClusters() *clusters { return &clusters{m: make(map[string]*fasthttp.HostClient)} }

// Add routes cluster name to the server at addr.
func (c *clusters) Add(name, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[name] = &fasthttp.HostClient{Addr: addr, MaxIdleConnDuration: time.Second}
}

// Do implements wasm.Upstream.
func (c *clusters) Do(cluster string, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	c.mu.Lock()
	hc := c.m[cluster]
	c.mu.Unlock()
	if hc == nil {
		return fmt.Errorf("cluster %q: %w", cluster, wasm.ErrUnknownCluster)
	}
	if err := hc.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("cluster %q: %w", cluster, err)
	}
	return nil
}

// trace is what the proxy's pipeline did for one stream.
type trace struct {
	RequestHeaders, RequestBody, ResponseHeaders, ResponseBody filter.Status
	// Called records which callbacks ran, in order.
	Called []string
	// Forwarded is true when the request went to the upstream.
	Forwarded bool
	// StartTime and ConnID are the values the proxy put in the Stream.
	StartTime time.Time
	ConnID    uint64
}

// proxy is a stand-in for Weft's data plane: a real fasthttp listener whose
// handler runs one filter around a real upstream, in the pipeline's order:
// OnRequestHeaders → OnRequestBody (if a body) → upstream (unless a local
// reply) → OnResponseHeaders → OnResponseBody (if a body) → OnLog → OnDone.
type proxy struct {
	factory  filter.Factory
	upstream *backend
	hc       *fasthttp.HostClient
	client   *fasthttp.HostClient
	nodeID   string
	nodeMeta map[string]string

	mu     sync.Mutex
	traces map[string]*trace
	dialed []string // local addresses of the client's connections
}

// startProxy serves factory in front of upstream until the test ends.
func startProxy(t testing.TB, factory filter.Factory, upstream *backend, env wasm.Env) *proxy {
	t.Helper()
	p := &proxy{
		factory:  factory,
		upstream: upstream,
		hc:       &fasthttp.HostClient{Addr: upstream.Addr, MaxIdleConnDuration: time.Second},
		nodeID:   env.NodeID,
		nodeMeta: env.NodeMetadata,
		traces:   make(map[string]*trace),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.serve, NoDefaultServerHeader: true, NoDefaultDate: true, Logger: testLogger{t},
		// Short, so the worker pool's cleaner ends soon after Shutdown.
		MaxIdleWorkerDuration: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	p.client = &fasthttp.HostClient{
		Addr:                ln.Addr().String(),
		MaxIdleConnDuration: time.Second,
		Dial: func(addr string) (net.Conn, error) {
			c, err := fasthttp.Dial(addr)
			if err == nil {
				p.mu.Lock()
				p.dialed = append(p.dialed, c.LocalAddr().String())
				p.mu.Unlock()
			}
			return c, err
		},
	}
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		_ = srv.Shutdown()
		<-done
		p.hc.CloseIdleConnections()
	})
	return p
}

// testLogger routes fasthttp server errors into the test log.
type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, args ...any) { l.t.Logf("proxy: "+format, args...) }

func (p *proxy) serve(ctx *fasthttp.RequestCtx) {
	id := string(ctx.Request.Header.Peek(idHeader))
	tr := &trace{StartTime: ctx.Time(), ConnID: ctx.ConnID()}
	p.mu.Lock()
	p.traces[id] = tr
	p.mu.Unlock()

	s := &filter.Stream{
		Request:      &ctx.Request,
		Response:     &ctx.Response,
		ID:           []byte(id),
		StartTime:    ctx.Time(),
		ConnID:       ctx.ConnID(),
		Source:       ctx.RemoteAddr(),
		Destination:  ctx.LocalAddr(),
		Listener:     "conformance",
		Direction:    "outbound",
		NodeID:       p.nodeID,
		NodeMetadata: p.nodeMeta,
	}
	f := p.factory.NewStreamFilter(s)
	if f == nil {
		p.forward(s, tr)
		return
	}
	call := func(name string) { tr.Called = append(tr.Called, name) }
	defer func() {
		call("OnDone")
		f.OnDone(s)
	}()

	reqEOS := len(ctx.Request.Body()) == 0
	call("OnRequestHeaders")
	tr.RequestHeaders = f.OnRequestHeaders(s, reqEOS)
	st := tr.RequestHeaders
	if st == filter.Continue && !reqEOS {
		call("OnRequestBody")
		tr.RequestBody = f.OnRequestBody(s, true)
		st = tr.RequestBody
	}
	if st == filter.Continue {
		s.RouteName, s.ClusterName = "conformance-route", "backend"
		p.forward(s, tr)
	}
	respEOS := len(s.Response.Body()) == 0
	call("OnResponseHeaders")
	tr.ResponseHeaders = f.OnResponseHeaders(s, respEOS)
	if tr.ResponseHeaders == filter.Continue && !respEOS {
		call("OnResponseBody")
		tr.ResponseBody = f.OnResponseBody(s, true)
	}
	call("OnLog")
	f.OnLog(s)
}

// forward sends the (filtered) request to the upstream, as a proxy would.
func (p *proxy) forward(s *filter.Stream, tr *trace) {
	tr.Forwarded = true
	if err := p.hc.DoTimeout(s.Request, s.Response, 10*time.Second); err != nil {
		s.SendLocalReply(503, []byte("upstream error: "+err.Error()), nil)
		s.ResponseFlags = "UF"
		return
	}
	s.UpstreamAddr = p.upstream.Addr
}

// request is what a test client sends.
type request struct {
	Method string // "" = GET
	Path   string // "" = "/"
	Host   string // "" = "svc.test"
	Header [][2]string
	Body   string
}

// result is what the client got back, and what the upstream and the proxy saw.
type result struct {
	ID       string
	Status   int
	Header   map[string][]string // lower-case names
	Body     string
	Upstream *seenRequest // nil when the request never reached the upstream
	Trace    *trace
}

// Get returns the first value of a response header, "" when absent.
func (r *result) Get(name string) string {
	if v := r.Header[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Has reports whether the response carried the header.
func (r *result) Has(name string) bool { _, ok := r.Header[strings.ToLower(name)]; return ok }

// do sends req through the proxy. It is safe for concurrent use (it reports
// errors instead of failing the test, so goroutines can call it).
func (p *proxy) do(r request) (*result, error) {
	id := unique("req")
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	method, path, host := r.Method, r.Path, r.Host
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = "svc.test"
	}
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetHost(host)
	req.Header.Set(idHeader, id)
	for _, h := range r.Header {
		req.Header.Add(h[0], h[1])
	}
	if r.Body != "" {
		req.SetBodyString(r.Body)
	}
	if err := p.client.DoTimeout(req, resp, 60*time.Second); err != nil {
		return nil, fmt.Errorf("request %s %s: %w", method, path, err)
	}
	res := &result{
		ID:       id,
		Status:   resp.StatusCode(),
		Header:   map[string][]string{},
		Body:     string(resp.Body()),
		Upstream: p.upstream.Seen(id),
	}
	for k, v := range resp.Header.All() {
		name := strings.ToLower(string(k))
		res.Header[name] = append(res.Header[name], string(v))
	}
	p.mu.Lock()
	res.Trace = p.traces[id]
	p.mu.Unlock()
	if res.Trace == nil {
		return nil, errors.New("proxy has no trace of request " + id)
	}
	return res, nil
}

// mustDo is do for the test goroutine.
func (p *proxy) mustDo(t testing.TB, r request) *result {
	t.Helper()
	res, err := p.do(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Dialed returns the local addresses of the client's connections so far.
func (p *proxy) Dialed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dialed...)
}

// eventually polls cond every 10ms until it holds or the bound passes. It is
// a bounded wait, not a timing assertion: the bound is far above normal.
func eventually(t testing.TB, bound time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v (last: %s)", what, bound, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
