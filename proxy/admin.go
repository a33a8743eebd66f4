package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/proxy/cluster"
)

// Ready implements admin.Source: a config is in force.
// A draining proxy is not ready: its listeners refuse new connections,
// so load balancers and Kubernetes should stop sending it any.
func (p *Proxy) Ready() bool { return p.snap.Load() != nil && !p.draining.Load() }

// ConfigDump implements admin.Source.
func (p *Proxy) ConfigDump() any {
	out := map[string]any{}
	if s := p.snap.Load(); s != nil {
		out["version"] = s.version
		out["config"] = s.cfg
	}
	if e := p.lastErr.Load(); e != nil {
		out["last_rejected"] = *e
	}
	return out
}

// Clusters implements admin.Source.
func (p *Proxy) Clusters() any {
	s := p.snap.Load()
	if s == nil {
		return []cluster.ClusterStatus{}
	}
	out := make([]cluster.ClusterStatus, 0, len(s.clusters))
	for _, cs := range s.clusters {
		out = append(out, cs.c.Status())
	}
	return out
}

// clusterCollector exports the clusters' own counters (ejections, health
// check failures, circuit breaker rejections, connections) for the config
// in force.
type clusterCollector struct{ p *Proxy }

var (
	descEjections = prometheus.NewDesc("weft_outlier_ejections_total", "Endpoints ejected by outlier detection.", []string{"cluster"}, nil)
	descRefused   = prometheus.NewDesc("weft_outlier_ejections_refused_total", "Ejections refused by max_ejection_percent or to keep the last usable endpoint.", []string{"cluster"}, nil)
	descHCFail    = prometheus.NewDesc("weft_health_check_failures_total", "Failed active health checks.", []string{"cluster"}, nil)
	descCBReject  = prometheus.NewDesc("weft_circuit_breaker_rejections_total", "Requests refused by a circuit breaker.", []string{"cluster", "limit"}, nil)
	descConns     = prometheus.NewDesc("weft_upstream_connections", "Open upstream connections.", []string{"cluster"}, nil)
	descHealthy   = prometheus.NewDesc("weft_cluster_endpoints_healthy", "Endpoints healthy and not ejected.", []string{"cluster"}, nil)
)

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEjections, descRefused, descHCFail, descCBReject, descConns, descHealthy, descConnsOpened,
		descStaleConns, descPooledRetries} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.snap.Load()
	if s == nil {
		return
	}
	for _, cs := range s.clusters {
		collectCluster(ch, cs)
	}
}

var descConnsOpened = prometheus.NewDesc("weft_upstream_connections_opened_total", "Upstream connections opened.", []string{"cluster"}, nil)

// A pooled HTTP/1.1 connection the upstream closed while idle
// (cluster/pooledconn.go): found so when taken, or broken under a request
// that then went again on another connection.
var (
	descStaleConns = prometheus.NewDesc("weft_upstream_pooled_conns_stale_total",
		"Pooled upstream connections found closed by the upstream when taken for a request, and closed unused.", []string{"cluster"}, nil)
	descPooledRetries = prometheus.NewDesc("weft_upstream_pooled_conn_retries_total",
		"Requests sent again on another connection by the connection pool (a reused connection that broke before any byte of the answer, an HTTP/2 stream the upstream did not process): not retries of the route's policy.", []string{"cluster"}, nil)
)

func collectCluster(ch chan<- prometheus.Metric, cs *clusterState) {
	st := cs.c.Stats()
	n := cs.name
	ch <- prometheus.MustNewConstMetric(descEjections, prometheus.CounterValue, float64(st.Ejections.Load()), n)
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.EjectionsOverflow.Load()), n)
	ch <- prometheus.MustNewConstMetric(descHCFail, prometheus.CounterValue, float64(st.HealthCheckFailures.Load()), n)
	for _, l := range []struct {
		limit string
		v     uint64
	}{
		{"max_connections", st.RejectedConnections.Load()},
		{"max_pending", st.RejectedPending.Load()},
		{"max_requests", st.RejectedRequests.Load()},
		{"max_retries", st.RejectedRetries.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(descCBReject, prometheus.CounterValue, float64(l.v), n, l.limit)
	}
	ch <- prometheus.MustNewConstMetric(descConnsOpened, prometheus.CounterValue, float64(st.ConnectionsOpened.Load()), n)
	ch <- prometheus.MustNewConstMetric(descStaleConns, prometheus.CounterValue, float64(st.StaleConnsClosed.Load()), n)
	ch <- prometheus.MustNewConstMetric(descPooledRetries, prometheus.CounterValue, float64(st.PooledConnRetries.Load()), n)
	status := cs.c.Status()
	healthy := 0
	for _, e := range status.Endpoints {
		if e.Healthy && !e.Ejected {
			healthy++
		}
	}
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(status.Connections), n)
	ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, float64(healthy), n)
}
