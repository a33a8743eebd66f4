package filtertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/wasm"
	"github.com/weftmesh/weft/sdk/wasmbuild"
)

// idHeader tags a request forwarded by the harness so the upstream server
// can file what it saw. It is added after the request filters ran, so the
// filter never sees it, and it is left out of UpstreamRequest.
const idHeader = "x-filtertest-id"

// Config configures a Harness.
type Config struct {
	// Name is the plugin name (it labels metrics); default "filter".
	Name string
	// PluginConfig and VMConfig are what the filter's proxy_on_configure and
	// proxy_on_vm_start read (JSON for Weft's plugins).
	PluginConfig, VMConfig []byte
	// Upstream answers forwarded requests; nil answers 200 "ok".
	Upstream fasthttp.RequestHandler
	// Clusters are call-out targets by cluster name: each handler is served
	// by its own server on 127.0.0.1.
	Clusters map[string]fasthttp.RequestHandler
	// ClusterAddrs are call-out targets already listening (host:port).
	ClusterAddrs map[string]string
	// FailOpen selects the plugin's failure policy (default fail closed).
	FailOpen bool
	// PoolSize is the number of VMs (default 1, so shared state is easy to
	// reason about).
	PoolSize int
	// CallbackTimeout bounds one guest callback (default 5s: tests check
	// behaviour, not speed).
	CallbackTimeout time.Duration
	// NodeID and NodeMetadata are the sidecar's (the `node` property).
	NodeID       string
	NodeMetadata map[string]string
	// Logger also receives the host's and guest's logs (nil: only captured).
	Logger *zap.Logger
	// LogLevel is the plugin's log_level (trace, debug, info, warn, error,
	// critical). Default trace, unlike the sidecar's info: a test sees
	// every line the filter logs.
	LogLevel string
}

// Harness is one loaded filter with its upstream and call-out servers.
type Harness struct {
	cfg      Config
	rt       *wasm.Runtime
	plugin   *wasm.Plugin
	logs     *observer.ObservedLogs
	upstream *server
	upClient *fasthttp.HostClient
	clusters map[string]*cluster
	seq      atomic.Uint64

	mu        sync.Mutex
	overrides map[string]fasthttp.RequestHandler
	seen      map[string]*Request
	closeOnce sync.Once
}

// New loads wasm in a fresh runtime and fails t if it does not load. The
// harness is closed when the test ends.
func New(t testing.TB, wasmBytes []byte, cfg Config) *Harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := Start(ctx, wasmBytes, cfg)
	if err != nil {
		t.Fatalf("filtertest: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// BuildGo builds the Go guest package pkg of the module holding the
// working directory (an import path or "./plugins/NAME" relative to the
// module root) with wasmbuild.Go (GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared, cached by a digest of its sources), and fails t if
// it does not build.
func BuildGo(t testing.TB, pkg string) []byte {
	t.Helper()
	root, err := wasmbuild.FindModule("", "")
	if err != nil {
		t.Fatalf("filtertest: %v", err)
	}
	m, err := wasmbuild.Go(context.Background(), wasmbuild.Options{Dir: root, Package: pkg})
	if err != nil {
		t.Fatalf("filtertest: %v", err)
	}
	return m.Wasm
}

// Start is New for callers without a testing.TB (the weft filter command).
// Close the harness when done.
func Start(ctx context.Context, wasmBytes []byte, cfg Config) (*Harness, error) {
	if cfg.Name == "" {
		cfg.Name = "filter"
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 1
	}
	if cfg.CallbackTimeout == 0 {
		cfg.CallbackTimeout = 5 * time.Second
	}
	core, logs := observer.New(zapcore.DebugLevel)
	if cfg.Logger != nil {
		core = zapcore.NewTee(core, cfg.Logger.Core())
	}
	h := &Harness{
		cfg:       cfg,
		logs:      logs,
		clusters:  make(map[string]*cluster),
		overrides: make(map[string]fasthttp.RequestHandler),
		seen:      make(map[string]*Request),
	}
	fail := func(err error) (*Harness, error) {
		h.Close()
		return nil, err
	}
	var err error
	if h.upstream, err = startServer(h.serveUpstream); err != nil {
		return fail(fmt.Errorf("upstream: %w", err))
	}
	h.upClient = &fasthttp.HostClient{Addr: h.upstream.addr, MaxIdleConnDuration: time.Second}
	for name, handler := range cfg.Clusters {
		c := &cluster{name: name}
		if c.srv, err = startServer(c.serve(handler)); err != nil {
			return fail(fmt.Errorf("cluster %q: %w", name, err))
		}
		c.client = &fasthttp.HostClient{Addr: c.srv.addr, MaxIdleConnDuration: time.Second}
		h.clusters[name] = c
	}
	for name, addr := range cfg.ClusterAddrs {
		if _, dup := h.clusters[name]; dup {
			return fail(fmt.Errorf("cluster %q: both a handler and an address", name))
		}
		h.clusters[name] = &cluster{name: name, client: &fasthttp.HostClient{Addr: addr, MaxIdleConnDuration: time.Second}}
	}
	h.rt, err = wasm.NewRuntime(ctx, wasm.RuntimeOptions{
		CacheDir: filepath.Join(os.TempDir(), "weft-filtertest-wazero"),
		Logger:   zap.New(core),
	})
	if err != nil {
		return fail(err)
	}
	spec := wasm.PluginSpec{
		Name:            cfg.Name,
		VMID:            cfg.Name,
		Module:          wasmBytes,
		VMConfig:        cfg.VMConfig,
		PluginConfig:    cfg.PluginConfig,
		FailOpen:        cfg.FailOpen,
		PoolSize:        cfg.PoolSize,
		CallbackTimeout: cfg.CallbackTimeout,
		LogLevel:        cfg.LogLevel,
	}
	if spec.LogLevel == "" {
		spec.LogLevel = "trace"
	}
	h.plugin, err = h.rt.Load(ctx, spec, wasm.Env{Upstream: h, NodeID: cfg.NodeID, NodeMetadata: cfg.NodeMetadata})
	if err != nil {
		return fail(err)
	}
	return h, nil
}

// Close unloads the filter and stops the servers.
func (h *Harness) Close() {
	h.closeOnce.Do(func() {
		if h.plugin != nil {
			h.plugin.Close()
		}
		if h.rt != nil {
			_ = h.rt.Close(context.Background())
		}
		if h.upClient != nil {
			h.upClient.CloseIdleConnections()
		}
		if h.upstream != nil {
			h.upstream.stop()
		}
		for _, c := range h.clusters {
			c.client.CloseIdleConnections()
			if c.srv != nil {
				c.srv.stop()
			}
		}
	})
}

// Do implements wasm.Upstream: the filter's HTTP call-outs go to the
// configured clusters.
func (h *Harness) Do(name string, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	c := h.clusters[name]
	if c == nil {
		return fmt.Errorf("cluster %q: not configured in filtertest.Config: %w", name, wasm.ErrUnknownCluster)
	}
	c.calls.Add(1)
	if err := c.client.DoTimeout(req, resp, timeout); err != nil {
		return fmt.Errorf("cluster %q: %w", name, err)
	}
	return nil
}

// Req is a request a test sends through the filter.
type Req struct {
	Method  string // default GET
	Path    string // default "/"
	Host    string // default "example.test"
	Headers [][2]string
	Body    string
	// Upstream answers this request instead of Config.Upstream.
	Upstream fasthttp.RequestHandler
}

// Request is a request as a server read it off the wire.
type Request struct {
	Method, Path, Host string
	Headers            [][2]string // lower-case names, in order
	Body               []byte
}

// Header returns the first value of name (case-insensitive) and whether it
// is present.
func (r *Request) Header(name string) (string, bool) { return lookup(r.Headers, name) }

// Response is what the client received.
type Response struct {
	Status  int
	Headers [][2]string // lower-case names, in order
	Body    []byte
}

// Header returns the first value of name (case-insensitive) and whether it
// is present.
func (r *Response) Header(name string) (string, bool) { return lookup(r.Headers, name) }

// Result is what happened to one request.
type Result struct {
	// UpstreamRequest is what the upstream received, nil when the request
	// did not reach it.
	UpstreamRequest *Request
	// Response is what the client got.
	Response Response
	// LocalReply is true when the filter (or its failure policy) answered
	// instead of the upstream.
	LocalReply bool
}

// Request sends r through the filter. Safe for concurrent use.
func (h *Harness) Request(r Req) *Result {
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
		host = "example.test"
	}
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetHost(host)
	for _, kv := range r.Headers {
		req.Header.Add(kv[0], kv[1])
	}
	if r.Body != "" {
		req.SetBodyString(r.Body)
	}
	id := strconv.FormatUint(h.seq.Add(1), 10)
	if r.Upstream != nil {
		h.mu.Lock()
		h.overrides[id] = r.Upstream
		h.mu.Unlock()
	}
	res := &Result{}
	res.LocalReply = h.serve(req, resp, id)
	h.mu.Lock()
	res.UpstreamRequest = h.seen[id]
	delete(h.seen, id)
	delete(h.overrides, id)
	h.mu.Unlock()
	res.Response.Status = resp.StatusCode()
	for k, v := range resp.Header.All() {
		res.Response.Headers = append(res.Response.Headers, [2]string{strings.ToLower(string(k)), string(v)})
	}
	res.Response.Body = append([]byte(nil), resp.Body()...)
	return res
}

// Serve runs req through the filter and the upstream into resp, with no
// bookkeeping (for benchmarks). It reports whether the answer is a local
// reply.
func (h *Harness) Serve(req *fasthttp.Request, resp *fasthttp.Response) bool {
	return h.serve(req, resp, "")
}

var (
	srcAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	dstAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15001}
)

// serve is the proxy's pipeline around one filter.
func (h *Harness) serve(req *fasthttp.Request, resp *fasthttp.Response, id string) (local bool) {
	s := &filter.Stream{
		Request:      req,
		Response:     resp,
		StartTime:    time.Now(),
		ConnID:       1,
		Source:       srcAddr,
		Destination:  dstAddr,
		Listener:     "filtertest",
		Direction:    "inbound",
		NodeID:       h.cfg.NodeID,
		NodeMetadata: h.cfg.NodeMetadata,
	}
	if id != "" {
		s.ID = []byte("filtertest-" + id)
	}
	f := h.plugin.NewStreamFilter(s)
	if f == nil {
		h.forward(s, id)
		return false
	}
	defer f.OnDone(s)
	reqEOS := len(req.Body()) == 0
	st := f.OnRequestHeaders(s, reqEOS)
	if st == filter.Continue && !reqEOS {
		st = f.OnRequestBody(s, true)
	}
	if st == filter.Continue {
		s.RouteName, s.ClusterName = "filtertest", "upstream"
		h.forward(s, id)
	} else {
		local = true
	}
	respEOS := len(resp.Body()) == 0
	if f.OnResponseHeaders(s, respEOS) == filter.Continue && !respEOS {
		f.OnResponseBody(s, true)
	}
	f.OnLog(s)
	return local
}

func (h *Harness) forward(s *filter.Stream, id string) {
	if id != "" {
		s.Request.Header.Set(idHeader, id)
	}
	if err := h.upClient.DoTimeout(s.Request, s.Response, 30*time.Second); err != nil {
		s.SendLocalReply(503, []byte("upstream error: "+err.Error()), nil)
		s.ResponseFlags = "UF"
		return
	}
	s.UpstreamAddr = h.upstream.addr
}

func (h *Harness) serveUpstream(ctx *fasthttp.RequestCtx) {
	id := string(ctx.Request.Header.Peek(idHeader))
	var handler fasthttp.RequestHandler
	if id != "" {
		h.mu.Lock()
		h.seen[id] = readRequest(&ctx.Request)
		handler = h.overrides[id]
		h.mu.Unlock()
	}
	if handler == nil {
		handler = h.cfg.Upstream
	}
	if handler == nil {
		ctx.SetStatusCode(200)
		ctx.SetBodyString("ok")
		return
	}
	handler(ctx)
}

func readRequest(r *fasthttp.Request) *Request {
	out := &Request{
		Method: string(r.Header.Method()),
		Path:   string(r.RequestURI()),
		Host:   string(r.Host()),
		Body:   append([]byte(nil), r.Body()...),
	}
	for k, v := range r.Header.All() {
		name := strings.ToLower(string(k))
		if name == idHeader {
			continue
		}
		out.Headers = append(out.Headers, [2]string{name, string(v)})
	}
	return out
}

func lookup(hs [][2]string, name string) (string, bool) {
	for _, kv := range hs {
		if strings.EqualFold(kv[0], name) {
			return kv[1], true
		}
	}
	return "", false
}

// cluster is one call-out target.
type cluster struct {
	name   string
	srv    *server // nil for ClusterAddrs
	client *fasthttp.HostClient
	calls  atomic.Int64 // call-outs the filter made

	mu   sync.Mutex
	seen []*Request
}

func (c *cluster) serve(handler fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		c.mu.Lock()
		c.seen = append(c.seen, readRequest(&ctx.Request))
		c.mu.Unlock()
		handler(ctx)
	}
}

// ClusterRequests returns what the call-out server of cluster name received
// so far (nil for clusters given by address).
func (h *Harness) ClusterRequests(name string) []*Request {
	c := h.clusters[name]
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Request(nil), c.seen...)
}

// CallOuts returns how many HTTP calls the filter made to cluster name.
func (h *Harness) CallOuts(name string) int {
	if c := h.clusters[name]; c != nil {
		return int(c.calls.Load())
	}
	return 0
}

// UpstreamAddr is the address of the harness's upstream server.
func (h *Harness) UpstreamAddr() string { return h.upstream.addr }

// server is a fasthttp server on 127.0.0.1:0.
type server struct {
	addr string
	srv  *fasthttp.Server
	done chan struct{}
}

func startServer(handler fasthttp.RequestHandler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{addr: ln.Addr().String(), done: make(chan struct{}),
		srv: &fasthttp.Server{Handler: handler, NoDefaultServerHeader: true, NoDefaultDate: true}}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *server) stop() {
	_ = s.srv.Shutdown()
	<-s.done
}

// LogEntry is one message the guest logged (proxy_log) or printed.
type LogEntry struct {
	Level   zapcore.Level
	Message string
}

// Logs returns the guest's log messages so far, in order.
func (h *Harness) Logs() []LogEntry {
	var out []LogEntry
	for _, e := range h.logs.All() {
		m := e.ContextMap()
		switch {
		case strings.HasPrefix(e.Message, "wasm log"):
			if s, ok := m["guest"].(string); ok {
				out = append(out, LogEntry{Level: e.Level, Message: s})
			}
		case e.Message == "wasm guest output":
			if s, ok := m["text"].(string); ok {
				out = append(out, LogEntry{Level: e.Level, Message: s})
			}
		}
	}
	return out
}

// HostLogs returns every log entry of the host (plugin loads, failures,
// VM replacements) and guest, formatted as "level message k=v ...".
func (h *Harness) HostLogs() []string {
	var out []string
	for _, e := range h.logs.All() {
		var b strings.Builder
		b.WriteString(e.Level.String())
		b.WriteByte(' ')
		b.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		out = append(out, b.String())
	}
	return out
}

// LogContains reports whether any guest log message contains sub.
func (h *Harness) LogContains(sub string) bool {
	for _, e := range h.Logs() {
		if strings.Contains(e.Message, sub) {
			return true
		}
	}
	return false
}

// Metric is a guest-defined metric's current value.
type Metric struct {
	// Kind is "counter", "gauge" or "histogram".
	Kind string
	// Value is a counter's or gauge's value.
	Value float64
	// Count and Sum describe a histogram.
	Count uint64
	Sum   float64
}

// ErrNoMetric is returned by Metric for a name the guest never defined.
var ErrNoMetric = errors.New("filtertest: no such metric")

// Metric returns the guest metric name (as given to proxy_define_metric).
func (h *Harness) Metric(name string) (Metric, error) {
	all, err := h.Metrics()
	if err != nil {
		return Metric{}, err
	}
	m, ok := all[name]
	if !ok {
		return Metric{}, fmt.Errorf("%w: %q", ErrNoMetric, name)
	}
	return m, nil
}

// Metrics returns every metric the guest defined, by name.
func (h *Harness) Metrics() (map[string]Metric, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h.rt.Collector()); err != nil {
		return nil, err
	}
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Metric)
	for _, fam := range fams {
		kind := ""
		switch fam.GetName() {
		case "weft_wasm_guest_counter_total":
			kind = "counter"
		case "weft_wasm_guest_gauge":
			kind = "gauge"
		case "weft_wasm_guest_histogram":
			kind = "histogram"
		default:
			continue
		}
		for _, m := range fam.GetMetric() {
			if label(m, "plugin") != h.cfg.Name {
				continue
			}
			v := Metric{Kind: kind}
			switch kind {
			case "counter":
				v.Value = m.GetCounter().GetValue()
			case "gauge":
				v.Value = m.GetGauge().GetValue()
			case "histogram":
				v.Count = m.GetHistogram().GetSampleCount()
				v.Sum = m.GetHistogram().GetSampleSum()
			}
			out[label(m, "name")] = v
		}
	}
	return out, nil
}

// HostEvents returns the host's event counters for the plugin (trap,
// callback_timeout, vm_replaced, fail_open, fail_closed, ...).
func (h *Harness) HostEvents() map[string]float64 {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h.rt.Collector()); err != nil {
		return nil
	}
	fams, _ := reg.Gather()
	out := make(map[string]float64)
	for _, fam := range fams {
		if fam.GetName() != "weft_wasm_events_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			if label(m, "plugin") == h.cfg.Name {
				out[label(m, "event")] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
