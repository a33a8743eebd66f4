package tcpproxy

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/proxy/authz"
	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/telemetry"
)

// Reasons a connection is closed without being forwarded (the reason
// label of weft_tcp_connections_refused_total).
const (
	ReasonTLS            = "tls_handshake"
	ReasonAuthzDenied    = "authz_denied"
	ReasonNoHealthy      = "no_healthy_upstream"
	ReasonOverflow       = "overflow"
	ReasonConnectFailure = "connect_failure"
	ReasonMaxConnections = "max_connections"
	ReasonNetworkFilter  = "network_filter"
)

var reasons = [...]string{ReasonTLS, ReasonAuthzDenied, ReasonNoHealthy, ReasonOverflow, ReasonConnectFailure, ReasonMaxConnections, ReasonNetworkFilter}

// flagFilterClosed is the access log flag of a connection a network
// filter closed (Envoy's local reset).
const flagFilterClosed = "LR"

type reason uint8

const (
	rTLS reason = iota
	rAuthz
	rNoHealthy
	rOverflow
	rConnect
	rMaxConns
	rFilter
)

// Metrics are the tcp listeners' metric families. Register Collectors once.
type Metrics struct {
	conns   *prometheus.CounterVec
	active  *prometheus.GaugeVec
	bytes   *prometheus.CounterVec
	refused *prometheus.CounterVec
}

// NewMetrics makes the metric families (labels listener and cluster).
func NewMetrics() *Metrics {
	lc := []string{"listener", "cluster"}
	return &Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_connections_total", Help: "Connections accepted by tcp listeners (forwarded or refused).",
		}, lc),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_tcp_active_connections", Help: "Connections of tcp listeners open now.",
		}, lc),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_bytes_total", Help: "Bytes forwarded by tcp listeners; direction in: from the downstream, out: to it.",
		}, []string{"listener", "cluster", "direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_tcp_connections_refused_total", Help: "Connections of tcp listeners closed without being forwarded, by reason.",
		}, []string{"listener", "cluster", "reason"}),
	}
}

// Collectors are what to register with a Prometheus registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.conns, m.active, m.bytes, m.refused}
}

// stats are one (listener, cluster)'s resolved metric handles.
type stats struct {
	conns   prometheus.Counter
	active  prometheus.Gauge
	in, out prometheus.Counter
	refused [len(reasons)]prometheus.Counter
}

func (m *Metrics) resolve(listener, clusterName string) *stats {
	st := &stats{
		conns:  m.conns.WithLabelValues(listener, clusterName),
		active: m.active.WithLabelValues(listener, clusterName),
		in:     m.bytes.WithLabelValues(listener, clusterName, "in"),
		out:    m.bytes.WithLabelValues(listener, clusterName, "out"),
	}
	for i, r := range reasons {
		st.refused[i] = m.refused.WithLabelValues(listener, clusterName, r)
	}
	return st
}

// Route is one tcp listener's compiled config: where its connections go
// and under which rules. It never changes; a config swap compiles a new
// one, and a connection keeps the Route it was accepted with.
type Route struct {
	listener       string
	direction      string
	cluster        *cluster.Cluster
	idleTimeout    time.Duration
	connectTimeout time.Duration // 0: the cluster's connect_timeout alone
	maxConns       int64
	authz          *authz.Policy
	accessLog      *telemetry.AccessLog
	stats          *stats
	filters        []ConnFilterFactory
	metadata       [2]map[string]map[string]any         // listener's, cluster's
	hostMetadata   map[string]map[string]map[string]any // endpoints' by address
}

// RouteOptions are what Compile needs beside the listener's config: the
// compiled parts the proxy's snapshot owns.
type RouteOptions struct {
	// Cluster is the compiled cluster named by tcp.cluster.
	Cluster *cluster.Cluster
	// Authz is the listener's compiled policy; nil allows every connection.
	Authz *authz.Policy
	// AccessLog is the listener's access log; nil logs nothing.
	AccessLog *telemetry.AccessLog
	// Metrics receives the listener's counters; nil: NewMetrics (unregistered).
	Metrics *Metrics
	// Filters are the listener's network filters, in order.
	Filters []ConnFilterFactory
	// ListenerMetadata and ClusterMetadata are what network filters read
	// as listener_metadata and cluster_metadata.
	ListenerMetadata, ClusterMetadata map[string]map[string]any
	// HostMetadata is the cluster's endpoints' metadata by address
	// (upstream_host_metadata).
	HostMetadata map[string]map[string]map[string]any
}

// Compile compiles a tcp listener's config. It refuses what a tcp listener
// cannot do (no tcp block, a different cluster, authz rules that look at
// HTTP requests), even when the config was not validated.
func Compile(lc *config.Listener, o RouteOptions) (*Route, error) {
	fail := func(format string, args ...any) (*Route, error) {
		return nil, fmt.Errorf("listener %q: tcp: "+format, append([]any{lc.Name}, args...)...)
	}
	t := lc.TCP
	if t == nil {
		return fail("no tcp block (tcp: {cluster: NAME})")
	}
	if o.Cluster == nil || o.Cluster.Name() != t.Cluster {
		return fail("cluster %q is not compiled", t.Cluster)
	}
	if a := lc.Authz; a != nil {
		for i, r := range a.Rules {
			if len(r.RequestPrincipals)+len(r.Methods)+len(r.Paths)+len(r.Headers) > 0 {
				return fail("authz rules[%d] %q: request conditions (request_principals, methods, paths, headers) do not apply to connections", i, r.Name)
			}
		}
	}
	if t.IdleTimeout < 0 || t.ConnectTimeout < 0 {
		return fail("negative timeout")
	}
	m := o.Metrics
	if m == nil {
		m = NewMetrics()
	}
	r := &Route{
		listener:       lc.Name,
		direction:      lc.Direction,
		cluster:        o.Cluster,
		idleTimeout:    t.IdleTimeout.D(),
		connectTimeout: t.ConnectTimeout.D(),
		maxConns:       int64(lc.Limits.MaxConnections),
		authz:          o.Authz,
		accessLog:      o.AccessLog,
		stats:          m.resolve(lc.Name, t.Cluster),
		filters:        o.Filters,
		metadata:       [2]map[string]map[string]any{o.ListenerMetadata, o.ClusterMetadata},
		hostMetadata:   o.HostMetadata,
	}
	if r.idleTimeout == 0 {
		r.idleTimeout = config.DefaultTCPIdleTimeout
	}
	if r.maxConns <= 0 {
		r.maxConns = defaultMaxConnections
	}
	if r.direction == "" {
		r.direction = "outbound"
	}
	return r, nil
}

// defaultMaxConnections is limits.max_connections's default.
const defaultMaxConnections = 10000

// Listener is the listener name the route was compiled for.
func (r *Route) Listener() string { return r.listener }

// Cluster is the cluster the route forwards to.
func (r *Route) Cluster() *cluster.Cluster { return r.cluster }
