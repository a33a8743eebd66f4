package telemetry

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the proxy's metric families in its own registry.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	active     *prometheus.GaugeVec
	upstreamRq *prometheus.CounterVec
	retries    *prometheus.CounterVec
	timeouts   *prometheus.CounterVec
	failures   *prometheus.CounterVec
	overflow   *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	cfgVersion *prometheus.GaugeVec
	grpc       *prometheus.CounterVec
	refused    *prometheus.CounterVec

	// handles caches what Route and Cluster resolved, so a config reload
	// does not look every label set up again (a weight change reloads
	// the whole config); ForgetCluster drops a cluster's.
	mu       sync.Mutex
	routes   map[[3]string]*RouteStats
	clusters map[string]*ClusterStats
}

// Latency buckets in seconds: 100µs to 10s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics makes the metric families and registers them, with the Go
// runtime and process collectors, in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_requests_total", Help: "Downstream requests by listener, route, cluster and status class.",
		}, []string{"listener", "route", "cluster", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_request_duration_seconds", Help: "Downstream request latency, from request read to response ready.",
			Buckets: latencyBuckets,
		}, []string{"listener", "route", "cluster"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_active_requests", Help: "Requests in flight per listener.",
		}, []string{"listener"}),
		upstreamRq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_upstream_requests_total", Help: "Tries sent to upstream endpoints (first tries and retries).",
		}, []string{"cluster"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_upstream_retries_total", Help: "Retries sent.",
		}, []string{"cluster"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_upstream_timeouts_total", Help: "Tries that hit the per-try or route timeout.",
		}, []string{"cluster"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_upstream_failures_total", Help: "Tries that ended without a response, by kind.",
		}, []string{"cluster", "kind"}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_retry_budget_exhausted_total", Help: "Retries refused by the retry budget.",
		}, []string{"cluster"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_config_reloads_total", Help: "Config reloads by result (applied, rejected).",
		}, []string{"result"}),
		grpc: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_grpc_requests_total", Help: "gRPC calls by listener, route, cluster and the gRPC status they ended with.",
		}, []string{"listener", "route", "cluster", "grpc_status"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_downstream_refused_total", Help: "Requests a listener refused over its limits, by reason (body_too_large, filter_limits).",
		}, []string{"listener", "reason"}),
		cfgVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_config_info", Help: "The config version in force (value 1).",
		}, []string{"version"}),
		routes:   map[[3]string]*RouteStats{},
		clusters: map[string]*ClusterStats{},
	}
	m.reg.MustRegister(m.requests, m.duration, m.active, m.upstreamRq, m.retries, m.timeouts,
		m.failures, m.overflow, m.reloads, m.cfgVersion, m.grpc, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where every Weft metric is registered; other packages add
// their collectors (clusters, Wasm plugins) here.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RouteStats are the handles for one (listener, route, cluster) triple.
type RouteStats struct {
	byClass [6]prometheus.Counter // 0: no status (aborted), 1xx..5xx
	latency prometheus.Observer
	// grpc counts calls by gRPC status 0-16 (17: any other), resolved on
	// first use so a route that carries no gRPC shows no series.
	grpc   [18]atomic.Pointer[prometheus.Counter]
	m      *Metrics
	labels [3]string
}

// Route resolves the handles for one (listener, route, cluster), once:
// every later call returns the same RouteStats.
func (m *Metrics) Route(listener, route, cluster string) *RouteStats {
	key := [3]string{listener, route, cluster}
	m.mu.Lock()
	defer m.mu.Unlock()
	if rs := m.routes[key]; rs != nil {
		return rs
	}
	rs := &RouteStats{latency: m.duration.WithLabelValues(listener, route, cluster), m: m, labels: [3]string{listener, route, cluster}}
	for i, c := range [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		rs.byClass[i] = m.requests.WithLabelValues(listener, route, cluster, c)
	}
	m.routes[key] = rs
	return rs
}

// Record counts one finished request.
func (r *RouteStats) Record(status int, d time.Duration) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	r.byClass[c].Inc()
	r.latency.Observe(d.Seconds())
}

// RecordGRPC counts one gRPC call that ended with status code.
func (r *RouteStats) RecordGRPC(code int) {
	if code < 0 || code > 16 {
		code = 17
	}
	c := r.grpc[code].Load()
	if c == nil {
		label := strconv.Itoa(code)
		if code == 17 {
			label = "other"
		}
		n := r.m.grpc.WithLabelValues(r.labels[0], r.labels[1], r.labels[2], label)
		r.grpc[code].Store(&n)
		c = &n
	}
	(*c).Inc()
}

// ClusterStats are the upstream handles of one cluster.
type ClusterStats struct {
	Requests, Retries, Timeouts, BudgetExhausted prometheus.Counter
	ConnectFailures, Resets, NoHealthy           prometheus.Counter
}

// Cluster resolves the handles for one cluster, once: every later call
// returns the same ClusterStats.
func (m *Metrics) Cluster(name string) *ClusterStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cs := m.clusters[name]; cs != nil {
		return cs
	}
	cs := &ClusterStats{
		Requests:        m.upstreamRq.WithLabelValues(name),
		Retries:         m.retries.WithLabelValues(name),
		Timeouts:        m.timeouts.WithLabelValues(name),
		BudgetExhausted: m.overflow.WithLabelValues(name),
		ConnectFailures: m.failures.WithLabelValues(name, "connect_failure"),
		Resets:          m.failures.WithLabelValues(name, "reset"),
		NoHealthy:       m.failures.WithLabelValues(name, "no_healthy_upstream"),
	}
	m.clusters[name] = cs
	return cs
}

// ForgetCluster deletes every series labelled with a cluster the config no
// longer has, so a scrape does not go on reporting it (and a re-added
// cluster starts from zero, as Prometheus expects of a new series).
func (m *Metrics) ForgetCluster(name string) {
	// Under the lock: a handle resolved meanwhile would count into a
	// deleted series.
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.clusters, name)
	for k := range m.routes {
		if k[2] == name {
			delete(m.routes, k)
		}
	}
	l := prometheus.Labels{"cluster": name}
	m.requests.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.grpc.DeletePartialMatch(l)
	for _, v := range []*prometheus.CounterVec{m.upstreamRq, m.retries, m.timeouts, m.failures, m.overflow} {
		v.DeletePartialMatch(l)
	}
}

// Active is the in-flight gauge of a listener.
func (m *Metrics) Active(listener string) prometheus.Gauge { return m.active.WithLabelValues(listener) }

// Refused counts a listener's requests refused for reason.
func (m *Metrics) Refused(listener, reason string) prometheus.Counter {
	return m.refused.WithLabelValues(listener, reason)
}

// Reload counts a config reload by result ("applied" or "rejected").
func (m *Metrics) Reload(result string) { m.reloads.WithLabelValues(result).Inc() }

// SetVersion records the config version in force.
func (m *Metrics) SetVersion(v string) {
	m.cfgVersion.Reset()
	m.cfgVersion.WithLabelValues(v).Set(1)
}
