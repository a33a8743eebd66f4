package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/resilience"
	"github.com/weftmesh/weft/proxy/route"
	"github.com/weftmesh/weft/proxy/tcpproxy"
	"github.com/weftmesh/weft/proxy/telemetry"
	"github.com/weftmesh/weft/proxy/tracing"
	"github.com/weftmesh/weft/proxy/wasm"
)

// snapshot is one config compiled. Nothing in it changes after it is built;
// a reload builds a new one and swaps the pointer.
type snapshot struct {
	version   string
	cfg       *config.Config
	raw       []byte
	clusters  []*clusterState
	byName    map[string]*clusterState
	plugins   map[string]*wasm.Plugin
	pluginKey map[string]string
	// failedOpen are fail_open filters that could not be loaded: their
	// chains run without them.
	failedOpen []string
	listeners  map[string]*listenerState
	// tracer is nil when tracing is off; traceKey is its exporter's settings.
	tracer   *tracing.Tracer
	traceKey string
}

// clusterState is a cluster with what the proxy keeps beside it.
type clusterState struct {
	c    *cluster.Cluster
	name string
	// cfg is the config it was compiled from.
	cfg config.Cluster
	// budget is shared by every snapshot that keeps this cluster, so
	// requests and retries still running on an old snapshot stay counted.
	budget *resilience.Budget
	stats  *telemetry.ClusterStats
	// metadata is the cluster's filter_metadata.
	metadata map[string]map[string]any
	// hostMetadata is its endpoints' filter_metadata by address (nil
	// when none has any).
	hostMetadata map[string]map[string]map[string]any
}

// listenerState is one listener's compiled config.
type listenerState struct {
	name      string
	direction string
	table     *route.Table
	filters   []filter.Factory
	routes    map[*route.Route]*routeState
	accessLog *telemetry.AccessLog
	limits    config.Limits
	active    prometheus.Gauge
	snap      *snapshot
	sec       listenerSecurity // mTLS and authz (security.go)
	// tcp is a tcp listener's forwarding (table is then nil).
	tcp *tcpproxy.Route
	// metadata is the listener's filter_metadata; routeMetadata says a
	// route or the one cluster of a route has some, so streams look their
	// route up before the listener's filters run (metadata.go).
	metadata      map[string]map[string]any
	routeMetadata bool
	// bodyTooLarge counts requests refused (413) for a body over
	// limits.max_body_bytes.
	bodyTooLarge prometheus.Counter
	// grpcWeb translates gRPC-Web calls (grpcweb.go); nil: off.
	grpcWeb *grpcWeb
}

// routeState is what the proxy keeps beside a compiled route.
type routeState struct {
	filters []filter.Factory
	retry   *resilience.Policy
	// stats per weighted target, by target index; noCluster for local answers.
	stats     []*telemetry.RouteStats
	noCluster *telemetry.RouteStats
	// clusterMetadata is the filter_metadata of the route's cluster when
	// it has one cluster (known before the cluster is picked, so filters
	// read cluster_metadata in their request callbacks, as in Envoy); nil
	// for weighted clusters, known only once one is picked.
	clusterMetadata map[string]map[string]any
}

// build compiles cfg into a snapshot, reusing from prev the clusters and
// plugins whose config is unchanged (so health and outlier state, VMs and
// compiled modules survive a reload). On error nothing new is left running.
func (p *Proxy) build(ctx context.Context, cfg *config.Config, raw []byte, baseDir string, prev *snapshot) (_ *snapshot, err error) {
	s := &snapshot{
		cfg:       cfg,
		raw:       raw,
		byName:    make(map[string]*clusterState, len(cfg.Clusters)),
		plugins:   make(map[string]*wasm.Plugin, len(cfg.Filters)),
		pluginKey: make(map[string]string, len(cfg.Filters)),
		listeners: make(map[string]*listenerState, len(cfg.Listeners)),
	}
	s.version = cfg.Version
	if s.version == "" {
		sum := sha256.Sum256(raw)
		s.version = hex.EncodeToString(sum[:6])
	}
	var fresh []*cluster.Cluster
	var freshPlugins []*wasm.Plugin
	defer func() {
		if err != nil {
			for _, c := range fresh {
				c.Close()
			}
			for _, pl := range freshPlugins {
				pl.Close()
			}
			for _, ls := range s.listeners { // access log files opened so far
				ls.accessLog.Close()
			}
		}
	}()

	index := make(map[string]int, len(cfg.Clusters))
	for i, cc := range cfg.Clusters {
		if old, ok := prev.clusterNamed(cc.Name); ok && sameCluster(&old.cfg, &cc) {
			// Unchanged: keep it whole, stats handles and metadata with
			// it (a weight change touches routes, not clusters).
			s.clusters = append(s.clusters, old)
			s.byName[cc.Name] = old
			index[cc.Name] = i
			continue
		}
		ctls, err := p.clusterTLSConfig(&cc, baseDir)
		if err != nil {
			return nil, err
		}
		c, err := cluster.New(cc, cluster.Options{Logger: p.log, TLS: ctls})
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cc.Name, err)
		}
		budget := &resilience.Budget{}
		if old, ok := prev.clusterNamed(cc.Name); ok && old.c.Key() == c.Key() {
			c, budget = old.c, old.budget
		} else {
			fresh = append(fresh, c)
		}
		cs := &clusterState{c: c, name: cc.Name, cfg: cc, stats: p.metrics.Cluster(cc.Name), budget: budget, metadata: filterMetadata(cc.Metadata),
			hostMetadata: hostMetadata(cc.Endpoints)}
		s.clusters = append(s.clusters, cs)
		s.byName[cc.Name] = cs
		index[cc.Name] = i
	}

	// Wasm services live beside the filters under a name no listener can
	// refer to, so reuse on reload and closing after a swap are the same.
	plugins := make([]config.Filter, 0, len(cfg.Filters)+len(cfg.WasmServices))
	plugins = append(plugins, cfg.Filters...)
	plugins = append(plugins, cfg.WasmServices...)
	for i, fc := range plugins {
		name, what := fc.Name, "filter"
		if i >= len(cfg.Filters) {
			name, what = serviceKeyPrefix+fc.Name, "wasm service"
		}
		var spec wasm.PluginSpec
		var err error
		stage := "load"
		if fc.Module.OCI != "" {
			spec, err = p.modules.spec(ctx, fc, baseDir)
			stage = "pull"
		} else {
			spec, err = wasm.SpecFromConfig(fc, baseDir)
		}
		var pl *wasm.Plugin
		if err == nil {
			key := spec.Key()
			s.pluginKey[name] = key
			if prev != nil && prev.pluginKey[name] == key {
				s.plugins[name] = prev.plugins[name]
				continue
			}
			stage = "start"
			pl, err = p.wasm.Load(ctx, spec, wasm.Env{Upstream: p, NodeID: cfg.Node.ID, NodeMetadata: cfg.Node.Metadata})
			if err != nil {
				err = fmt.Errorf("%s %q: %w", what, fc.Name, err)
			}
		}
		if err != nil {
			// A filter that never loaded and says fail_open does not keep
			// the sidecar from starting (or the rest of a change from
			// applying): it runs without the filter until a later config
			// loads it. Any other failure refuses the config, so the last
			// good one — this filter's last good version with it — keeps
			// serving.
			if fc.FailurePolicy != "fail_open" || (prev != nil && prev.plugins[name] != nil) {
				return nil, err
			}
			p.log.Warn(what+" unavailable; fail_open: running without it until a config loads it",
				zap.String("filter", fc.Name), zap.String("stage", stage), zap.Error(err))
			p.modules.unavailable.WithLabelValues(fc.Name).Inc()
			s.pluginKey[name] = "unavailable" // never equal to a spec key: the next config retries
			s.failedOpen = append(s.failedOpen, name)
			continue
		}
		freshPlugins = append(freshPlugins, pl)
		s.plugins[name] = pl
	}
	factories := func(names []string) []filter.Factory {
		out := make([]filter.Factory, 0, len(names))
		for _, n := range names {
			if pl := s.plugins[n]; pl != nil {
				out = append(out, pl)
			}
		}
		return out
	}

	for _, lc := range cfg.Listeners {
		if protocolOf(&lc) == "tcp" {
			ls, err := p.buildTCPListener(&lc, s, baseDir)
			if err != nil {
				return nil, err
			}
			s.listeners[lc.Name] = ls
			continue
		}
		t, err := route.Compile(lc, index)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		al, err := telemetry.NewAccessLog(lc.AccessLog)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		ls := &listenerState{
			name:      lc.Name,
			direction: lc.Direction,
			table:     t,
			filters:   factories(lc.Filters),
			routes:    make(map[*route.Route]*routeState),
			accessLog: al,
			limits:    lc.Limits,
			active:    p.metrics.Active(lc.Name),
			snap:      s,

			bodyTooLarge: p.metrics.Refused(lc.Name, "body_too_large"),
			grpcWeb:      compileGRPCWeb(lc.GRPCWeb),
		}
		s.listeners[lc.Name] = ls // from here on a failure closes its access log
		ls.metadata = filterMetadata(lc.Metadata)
		if ls.direction == "" {
			ls.direction = "outbound"
		}
		if ls.sec, err = p.compileSecurity(&lc, baseDir); err != nil {
			return nil, err
		}
		for _, r := range t.Routes() {
			rs := &routeState{filters: factories(r.Filters), noCluster: p.metrics.Route(lc.Name, r.Name, "")}
			if len(r.Clusters) == 1 {
				rs.clusterMetadata = s.clusters[r.Clusters[0].Index].metadata
			}
			ls.routeMetadata = ls.routeMetadata || r.Metadata != nil || rs.clusterMetadata != nil
			if rs.retry, err = resilience.Compile(r.Retry); err != nil {
				return nil, fmt.Errorf("listener %q: route %q: %w", lc.Name, r.Name, err)
			}
			for _, tg := range r.Clusters {
				rs.stats = append(rs.stats, p.metrics.Route(lc.Name, r.Name, tg.Name))
			}
			ls.routes[r] = rs
		}
		s.listeners[lc.Name] = ls
	}
	s.tracer, s.traceKey = p.buildTracer(cfg, prev) // after every step that can fail
	for _, c := range fresh {
		c.Start()
	}
	return s, nil
}

// buildTCPListener compiles a tcp listener: its security and forwarding.
func (p *Proxy) buildTCPListener(lc *config.Listener, s *snapshot, baseDir string) (*listenerState, error) {
	if lc.TCP == nil {
		return nil, fmt.Errorf("listener %q: protocol tcp needs tcp: {cluster: NAME}", lc.Name)
	}
	cs, ok := s.byName[lc.TCP.Cluster]
	if !ok {
		return nil, fmt.Errorf("listener %q: tcp.cluster %q is not declared", lc.Name, lc.TCP.Cluster)
	}
	sec, err := p.compileSecurity(lc, baseDir)
	if err != nil {
		return nil, err
	}
	al, err := telemetry.NewAccessLog(lc.AccessLog)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	r, err := tcpproxy.Compile(lc, tcpproxy.RouteOptions{Cluster: cs.c, Authz: sec.authz, AccessLog: al, Metrics: p.tcpMetrics,
		Filters: networkFilters(s, lc.Filters), ListenerMetadata: filterMetadata(lc.Metadata), ClusterMetadata: cs.metadata, HostMetadata: cs.hostMetadata})
	if err != nil {
		al.Close()
		return nil, err
	}
	return &listenerState{name: lc.Name, direction: lc.Direction, accessLog: al, active: p.metrics.Active(lc.Name), snap: s, sec: sec, tcp: r}, nil
}

// release closes what old has and next does not share.
func release(old, next *snapshot) {
	if old == nil {
		return
	}
	if next == nil { // nothing carried over: close everything old has
		next = &snapshot{}
	}
	for name, cs := range old.byName {
		if n, ok := next.byName[name]; !ok || n.c != cs.c {
			cs.c.Close()
		}
	}
	for name, pl := range old.plugins {
		if n, ok := next.plugins[name]; pl != nil && (!ok || n != pl) {
			pl.Close()
		}
	}
	for name, ls := range old.listeners {
		if n, ok := next.listeners[name]; !ok || n.accessLog != ls.accessLog {
			ls.accessLog.Close()
		}
	}
	releaseTracer(old, next)
}

// serviceKeyPrefix keys wasm services in snapshot.plugins apart from
// filters (a NUL no config name holds).
const serviceKeyPrefix = "service\x00"

func baseDirOf(path string) string {
	if path == "" {
		return "."
	}
	return filepath.Dir(path)
}

// sameCluster reports whether a cluster compiled from old can serve for
// next as it is: the same config, and no files to read again (a cluster
// whose tls names files is compiled again, so a missing file still
// refuses the config).
func sameCluster(old, next *config.Cluster) bool {
	if t := next.TLS; t != nil && (t.CertFile != "" || t.KeyFile != "" || t.CAFile != "") {
		return false
	}
	return reflect.DeepEqual(old, next)
}

// clusterNamed is the cluster of that name in s (a nil s has none).
func (s *snapshot) clusterNamed(name string) (*clusterState, bool) {
	if s == nil {
		return nil, false
	}
	cs, ok := s.byName[name]
	return cs, ok
}
