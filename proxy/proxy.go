package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/authz"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/listener"
	"github.com/weftmesh/weft/proxy/tcpproxy"
	"github.com/weftmesh/weft/proxy/telemetry"
	"github.com/weftmesh/weft/proxy/tracing"
	"github.com/weftmesh/weft/proxy/wasm"
)

// Options configure a Proxy.
type Options struct {
	Logger *zap.Logger
	// WasmCacheDir keeps compiled Wasm modules across restarts ("" = memory).
	WasmCacheDir string
	// ModuleCacheDir keeps modules pulled from OCI registries, by digest
	// (default WasmCacheDir/oci; "" with no WasmCacheDir = memory).
	ModuleCacheDir string
	// DrainTimeout bounds the graceful shutdown of a listener (default 30s).
	DrainTimeout time.Duration
	// Identity is the sidecar's mesh identity (SVID and trust bundle, kept
	// fresh by identity.Source.Rotate); listener and cluster tls blocks
	// without files use it. Nil: only file identities.
	Identity *identity.Source
}

// Proxy is a running sidecar data plane.
type Proxy struct {
	log     *zap.Logger
	metrics *telemetry.Metrics
	wasm    *wasm.Runtime
	modules *moduleSource
	drain   time.Duration

	mu        sync.Mutex // serialises Apply
	snap      atomic.Pointer[snapshot]
	listeners map[string]*runningListener
	wg        sync.WaitGroup
	errs      chan error
	// lastErr is the last rejected config's error, for /config_dump.
	lastErr atomic.Pointer[string]
	// mirrorSem bounds concurrent mirrored requests; mirrorsSaturated
	// counts those dropped for it, mirrorsTooLarge those whose streamed
	// body outgrew mirrorBodyLimit.
	mirrorSem                         chan struct{}
	mirrorsSaturated, mirrorsTooLarge prometheus.Counter
	// identity is the mesh identity (nil: none); authzMetrics counts denials.
	identity     *identity.Source
	authzMetrics *authz.Metrics
	// traceStats counts spans across exporters (nil until tracing is on).
	traceStats *tracing.Stats
	// tcpMetrics counts the tcp listeners' connections and bytes.
	tcpMetrics *tcpproxy.Metrics
	// h2Stats counts HTTP/2 connections and protocol errors over every
	// listener.
	h2Stats *listener.H2Stats
	// rejects counts HTTP/1.1 requests the listeners refused before the
	// handler (malformed, over a limit), by reason.
	rejects *listener.Rejects
	// draining is set when Shutdown begins (Ready is then false).
	draining atomic.Bool
	// settle gives memory back after a start or a reload that loaded
	// code (settle.go).
	settle settler
}

// runningListener is a bound listener; its compiled state is swapped with
// each snapshot while the socket stays open.
type runningListener struct {
	p        *Proxy
	address  string
	protocol string // "http" or "tcp"
	// limits are the ones the socket was bound with (header size,
	// connections and idle timeout stay these).
	limits config.Limits
	http2  config.HTTP2 // the HTTP/2 settings it was bound with
	l      boundListener
	state  atomic.Pointer[listenerState]
}

// requestLimits are the limits of the config in force, read per request.
func (rl *runningListener) requestLimits() config.Limits {
	if ls := rl.state.Load(); ls != nil {
		return ls.limits
	}
	return rl.limits
}

// boundListener is an http (listener.Listener) or tcp (tcpproxy.Server)
// listener.
type boundListener interface {
	Addr() net.Addr
	Serve() error
	Shutdown(ctx context.Context) error
}

// tcpRoute is a tcp listener's compiled config in force (its state's).
func (rl *runningListener) tcpRoute() *tcpproxy.Route {
	if ls := rl.state.Load(); ls != nil {
		return ls.tcp
	}
	return nil
}

// New makes a proxy with no config; Apply gives it one.
func New(ctx context.Context, o Options) (*Proxy, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeOptions{CacheDir: o.WasmCacheDir, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		log:       o.Logger,
		metrics:   telemetry.NewMetrics(),
		wasm:      rt,
		modules:   newModuleSource(moduleCacheDir(o), o.Logger),
		drain:     o.DrainTimeout,
		listeners: make(map[string]*runningListener),
		errs:      make(chan error, 16),
		mirrorSem: make(chan struct{}, 64),
		mirrorsSaturated: prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_mirror_dropped_total",
			Help: "Mirror copies not sent, by reason.", ConstLabels: prometheus.Labels{"reason": "saturated"}}),
		mirrorsTooLarge: prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_mirror_dropped_total",
			Help: "Mirror copies not sent, by reason.", ConstLabels: prometheus.Labels{"reason": "body_too_large"}}),
	}
	p.settle.log = o.Logger
	p.identity, p.authzMetrics = o.Identity, authz.NewMetrics()
	p.metrics.Registry().MustRegister(rt.Collector(), rt.TaggedCollector(), &clusterCollector{p: p}, p.authzMetrics.Collector(), p.modules.refusals, p.modules.unavailable, p.mirrorsSaturated, p.mirrorsTooLarge)
	p.tcpMetrics = tcpproxy.NewMetrics()
	p.h2Stats = &listener.H2Stats{}
	p.metrics.Registry().MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "weft_http2_connections_total", Help: "HTTP/2 connections accepted (h2 by ALPN, h2c by preface or Upgrade)."},
			func() float64 { return float64(p.h2Stats.Connections.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "weft_http2_upgrades_total", Help: "HTTP/1.1 connections upgraded to h2c."},
			func() float64 { return float64(p.h2Stats.Upgrades.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "weft_http2_protocol_errors_total", Help: "HTTP/2 protocol errors answered with RST_STREAM or GOAWAY."},
			func() float64 { return float64(p.h2Stats.Errors.Load()) }))
	p.metrics.Registry().MustRegister(p.tcpMetrics.Collectors()...)
	p.rejects = &listener.Rejects{}
	for _, r := range listener.Reasons() {
		p.metrics.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_downstream_rejected_total", Help: "Downstream requests refused before routing (malformed, or over a listener limit), by reason.",
			ConstLabels: prometheus.Labels{"reason": r.String()},
		}, func() float64 { return float64(p.rejects.Count(r)) }))
	}
	return p, nil
}

// Metrics is the proxy's metric registry and handles.
func (p *Proxy) Metrics() *telemetry.Metrics { return p.metrics }

// Version is the config version in force ("" before the first Apply).
func (p *Proxy) Version() string {
	if s := p.snap.Load(); s != nil {
		return s.version
	}
	return ""
}

// Apply compiles cfg and swaps it in. raw is the source text (for
// /config_dump and the version); path locates relative module paths. On any
// error nothing changes: the config in force keeps serving.
func (p *Proxy) Apply(ctx context.Context, cfg *config.Config, raw []byte, path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.apply(ctx, cfg, raw, path)
	if err != nil {
		msg := err.Error()
		p.lastErr.Store(&msg)
		p.metrics.Reload("rejected")
		return err
	}
	p.lastErr.Store(nil)
	p.metrics.Reload("applied")
	return nil
}

func (p *Proxy) apply(ctx context.Context, cfg *config.Config, raw []byte, path string) error {
	prev := p.snap.Load()
	next, err := p.build(ctx, cfg, raw, baseDirOf(path), prev)
	if err != nil {
		return err
	}
	p.wasm.SetStatsTags(statsTags(cfg))
	// Limits fixed at bind time cannot change on a listener that keeps its
	// socket: refuse rather than pretend (the others apply per request).
	for _, lc := range cfg.Listeners {
		if old, ok := p.listeners[lc.Name]; ok && old.address == lc.Address && old.protocol == protocolOf(&lc) && old.protocol != "tcp" {
			if what := listener.FixedLimitsChanged(old.limits, lc.Limits); what != "" {
				release(next, prev)
				return fmt.Errorf("listener %q: limits.%s cannot change while the listener keeps its address (it is fixed when the port is bound): restart the sidecar, or move the listener to a new address", lc.Name, what)
			}
			if old.http2 != lc.HTTP2 {
				release(next, prev)
				return fmt.Errorf("listener %q: http2 settings cannot change while the listener keeps its address (they are fixed when the port is bound): restart the sidecar, or move the listener to a new address", lc.Name)
			}
		}
	}
	// Bind new listeners before anything changes, so a busy port refuses
	// the whole config.
	added := map[string]*runningListener{}
	for _, lc := range cfg.Listeners {
		proto := protocolOf(&lc)
		old, ok := p.listeners[lc.Name]
		if ok && old.address == lc.Address && old.protocol == proto {
			continue
		}
		rl := &runningListener{p: p, address: lc.Address, protocol: proto, limits: lc.Limits, http2: lc.HTTP2}
		var l boundListener
		var err error
		if proto == "tcp" {
			l, err = tcpproxy.Listen(tcpproxy.Options{Name: lc.Name, Address: lc.Address, Route: rl.tcpRoute, TLSSelect: rl.tlsSelect, Logger: p.log})
		} else {
			l, err = listener.Listen(listener.Options{Name: lc.Name, Address: lc.Address, Limits: lc.Limits, Handler: rl.serve, Logger: p.log, TLSSelect: rl.tlsSelect, RequestLimits: rl.requestLimits, Rejects: p.rejects,
				H2: &listener.H2Options{Handler: http.HandlerFunc(rl.serveHTTP2), Settings: lc.HTTP2, Stats: p.h2Stats}})
		}
		if err != nil && ok && old.address == lc.Address {
			err = fmt.Errorf("%w (the listener changes protocol on the same address: remove it in one config and add it back in the next, or change its address)", err)
		}
		if err != nil {
			for _, a := range added {
				_ = a.l.Shutdown(ctx)
			}
			release(next, prev)
			return err
		}
		rl.l = l
		added[lc.Name] = rl
	}
	// Swap: every listener's state first, then the snapshot pointer.
	for name, ls := range next.listeners {
		if rl, ok := added[name]; ok {
			rl.state.Store(ls)
			continue
		}
		p.listeners[name].state.Store(ls)
	}
	p.snap.Store(next)
	p.metrics.SetVersion(next.version)
	var gone []*runningListener
	for name, rl := range p.listeners {
		if a, ok := added[name]; ok && a != rl {
			gone = append(gone, rl)
		} else if _, ok := next.listeners[name]; !ok {
			gone = append(gone, rl)
			delete(p.listeners, name)
		}
	}
	for name, rl := range added {
		p.listeners[name] = rl
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := rl.l.Serve(); err != nil {
				select {
				case p.errs <- err:
				default:
				}
			}
		}()
		p.log.Info("listening", zap.String("listener", name), zap.String("address", rl.l.Addr().String()))
	}
	for _, rl := range gone {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), p.drain)
			defer cancel()
			_ = rl.l.Shutdown(ctx)
		}()
	}
	// Old clusters and plugins close once requests on them drain; they
	// hold their own in-flight accounting.
	go func() {
		time.Sleep(p.drainGrace())
		release(prev, next)
		p.forgetClusters(prev)
	}()
	if loadedCode(prev, next) {
		p.settle.soon()
	}
	p.log.Info("config applied", zap.String("version", next.version))
	return nil
}

// loadedCode reports whether next is the first config or loaded a Wasm
// plugin prev did not have: a start-up or compile burst to settle after.
func loadedCode(prev, next *snapshot) bool {
	if prev == nil {
		return true
	}
	for name, pl := range next.plugins {
		if prev.plugins[name] != pl {
			return true
		}
	}
	return false
}

// forgetClusters drops the metric series of prev's clusters that the
// config now in force no longer has. It runs once requests on prev have
// drained, so none of them re-creates a series.
func (p *Proxy) forgetClusters(prev *snapshot) {
	if prev == nil {
		return
	}
	cur := p.snap.Load()
	for name := range prev.byName {
		if cur == nil || cur.byName[name] == nil {
			p.metrics.ForgetCluster(name)
		}
	}
}

// protocolOf is a listener's protocol, "http" unless it says "tcp".
func protocolOf(lc *config.Listener) string {
	if lc.Protocol == "tcp" {
		return "tcp"
	}
	return "http"
}

// drainGrace is how long a replaced snapshot's clusters stay open for
// requests still using them.
func (p *Proxy) drainGrace() time.Duration {
	if p.drain < 5*time.Second {
		return p.drain
	}
	return 5 * time.Second
}

// ListenerAddr is the bound address of a listener (tests use port 0).
func (p *Proxy) ListenerAddr(name string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rl, ok := p.listeners[name]; ok {
		return rl.l.Addr()
	}
	return nil
}

// Errors reports listeners that stopped serving with an error.
func (p *Proxy) Errors() <-chan error { return p.errs }

// Shutdown drains every listener (in-flight requests finish, until ctx
// ends), then closes clusters and plugins.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.draining.Store(true) // /ready answers 503 from now on
	p.settle.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	errc := make(chan error, len(p.listeners))
	for _, rl := range p.listeners {
		go func() { errc <- rl.l.Shutdown(ctx) }()
	}
	var errs []error
	for range p.listeners {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	p.wg.Wait()
	if s := p.snap.Load(); s != nil {
		if err := closeTracer(ctx, s, nil); err != nil { // flush spans within ctx
			errs = append(errs, err)
		}
		release(s, &snapshot{})
	}
	if err := p.wasm.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Do implements wasm.Upstream: a Wasm filter's HTTP call-out to a cluster of
// the config in force.
func (p *Proxy) Do(clusterName string, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	s := p.snap.Load()
	if s == nil {
		return errors.New("no config")
	}
	cs, ok := s.byName[clusterName]
	if !ok {
		return fmt.Errorf("%w %q", wasm.ErrUnknownCluster, clusterName)
	}
	ep := cs.c.Pick(0, false, nil)
	if ep == nil {
		return fmt.Errorf("cluster %q: %w", clusterName, wasm.ErrNoHealthyEndpoint)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	err := ep.Do(req, resp, time.Now().Add(timeout))
	ep.Report(resp.StatusCode(), err)
	return err
}

// Stream implements wasm.StreamUpstream: a Wasm filter's gRPC call-out to
// a cluster of the config in force, over HTTP/2 (the cluster must speak
// it: protocol http2, or auto).
func (p *Proxy) Stream(clusterName string, req *http.Request) (*http.Response, error) {
	s := p.snap.Load()
	if s == nil {
		return nil, errors.New("no config")
	}
	cs, ok := s.byName[clusterName]
	if !ok {
		return nil, fmt.Errorf("unknown cluster %q", clusterName)
	}
	if !cs.c.UsesHTTP2(true) {
		return nil, fmt.Errorf("cluster %q speaks HTTP/1.1: a gRPC call-out needs protocol http2 (or auto)", clusterName)
	}
	ep := cs.c.Pick(0, false, nil)
	if ep == nil {
		return nil, fmt.Errorf("cluster %q: no healthy endpoint", clusterName)
	}
	req.Host = clusterName
	resp, err := ep.RoundTrip(req, true)
	if err != nil {
		ep.Report(0, err)
		return nil, err
	}
	ep.Report(resp.StatusCode, nil)
	return resp, nil
}

func moduleCacheDir(o Options) string {
	if o.ModuleCacheDir != "" || o.WasmCacheDir == "" {
		return o.ModuleCacheDir
	}
	return filepath.Join(o.WasmCacheDir, "oci")
}
