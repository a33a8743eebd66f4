package admin

import (
	_ "embed"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weftmesh/weft/proxy/telemetry"
)

//go:embed ui.html
var uiPage []byte

// RouteTraffic is one (listener, route, cluster)'s traffic as /ui/stats
// reports it.
type RouteTraffic struct {
	Listener string `json:"listener"`
	Route    string `json:"route"`
	Cluster  string `json:"cluster"`
	// Requests counts every answered request since the sidecar started;
	// Errors the 5xx ones.
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// RequestsPerSecond is over the rate window (see UIStats.RateSince).
	RequestsPerSecond float64 `json:"requests_per_second"`
	// P50Ms and P99Ms estimate latency from weft_request_duration_seconds
	// over the rate window, or since the start when the window had no
	// requests; LatencyWindow says which ("window", "since_start"), and is
	// empty when the route has answered nothing yet.
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	LatencyWindow string  `json:"latency_window,omitempty"`
}

// PluginCost is one Wasm plugin's accounting, read from its
// weft_wasm_plugin_* and weft_wasm_events_total metrics.
type PluginCost struct {
	Plugin string `json:"plugin"`
	telemetry.PluginCounters
	// CallsPerSecond and GuestMsPerSecond are over the rate window.
	CallsPerSecond   float64 `json:"calls_per_second"`
	GuestMsPerSecond float64 `json:"guest_ms_per_second"`
}

// UIStats is the answer of /ui/stats.
type UIStats struct {
	At time.Time `json:"at"`
	// RateSince is where the rate window starts: the admin server's start
	// at first, so the page's first poll already has rates, then a sample
	// at least rateWindow older than At.
	RateSince time.Time      `json:"rate_since"`
	Routes    []RouteTraffic `json:"routes"`
	Plugins   []PluginCost   `json:"plugins"`
}

// rateWindow is the shortest span rates are computed over once the admin
// server has run that long: polls closer together (several open pages)
// share the older sample instead of dividing by a few milliseconds.
const rateWindow = 2 * time.Second

// counters is one reading of the counters rates and latency windows are
// computed from.
type counters struct {
	at      time.Time
	routes  map[[3]string]routeCounts
	plugins map[string][2]float64 // calls, guest seconds
}

type routeCounts struct {
	requests float64
	buckets  map[float64]float64 // cumulative by upper bound, +Inf included
}

// uiStats answers /ui/stats. It keeps two samples server side, so a rate
// needs no second poll: older (the base of every rate) and newer (the
// next base, once it is rateWindow old).
type uiStats struct {
	reg *prometheus.Registry
	now func() time.Time

	mu           sync.Mutex
	older, newer counters
}

func newUIStats(reg *prometheus.Registry, now func() time.Time) *uiStats {
	// The counters start at zero with the sidecar, which starts the admin
	// server: an empty sample at the start is the first base.
	start := counters{at: now()}
	return &uiStats{reg: reg, now: now, older: start, newer: start}
}

// uiRoutes serves the sidecar's own view: /ui (the page) and /ui/stats
// (traffic, latency and plugin cost read from reg).
func uiRoutes(mux *http.ServeMux, reg *prometheus.Registry) {
	stats := newUIStats(reg, time.Now)
	mux.HandleFunc("/ui", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(uiPage)
	})
	mux.HandleFunc("/ui/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := stats.read()
		if err != nil {
			http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, st)
	})
}

// read gathers the metrics and computes rates against the older sample.
func (u *uiStats) read() (UIStats, error) {
	fams, err := u.reg.Gather()
	if err != nil {
		return UIStats{}, err
	}
	routes, latency := routeTraffic(fams)
	st := UIStats{At: u.now(), Routes: routes, Plugins: pluginCosts(fams)}
	cur := sampleOf(st, latency)
	u.mu.Lock()
	if cur.at.Sub(u.newer.at) >= rateWindow {
		u.older, u.newer = u.newer, cur
	}
	base := u.older
	u.mu.Unlock()
	st.RateSince = base.at
	secs := cur.at.Sub(base.at).Seconds()
	for i := range st.Routes {
		rt := &st.Routes[i]
		k := [3]string{rt.Listener, rt.Route, rt.Cluster}
		now, before := cur.routes[k], base.routes[k]
		window := map[float64]float64{}
		for ub, n := range now.buckets {
			window[ub] = max(0, n-before.buckets[ub])
		}
		if secs > 0 {
			rt.RequestsPerSecond = max(0, now.requests-before.requests) / secs
		}
		buckets, name := window, "window"
		if window[math.Inf(1)] == 0 {
			buckets, name = now.buckets, "since_start"
		}
		if q := telemetry.Quantile(0.5, buckets); !math.IsNaN(q) {
			rt.P50Ms, rt.P99Ms, rt.LatencyWindow = q*1000, telemetry.Quantile(0.99, buckets)*1000, name
		}
	}
	for i := range st.Plugins {
		p := &st.Plugins[i]
		if b := base.plugins[p.Plugin]; secs > 0 { // a plugin missing from base started at zero
			p.CallsPerSecond = max(0, p.Calls-b[0]) / secs
			p.GuestMsPerSecond = 1000 * max(0, p.GuestSeconds-b[1]) / secs
		}
	}
	return st, nil
}

// sampleOf keeps what rates are computed from.
func sampleOf(st UIStats, latency map[[3]string]map[float64]float64) counters {
	c := counters{at: st.At, routes: make(map[[3]string]routeCounts, len(st.Routes)), plugins: make(map[string][2]float64, len(st.Plugins))}
	for _, rt := range st.Routes {
		k := [3]string{rt.Listener, rt.Route, rt.Cluster}
		c.routes[k] = routeCounts{requests: rt.Requests, buckets: latency[k]}
	}
	for _, p := range st.Plugins {
		c.plugins[p.Plugin] = [2]float64{p.Calls, p.GuestSeconds}
	}
	return c
}

// routeTraffic sums weft_requests_total and reads the latency histogram of
// weft_request_duration_seconds (cumulative counts by upper bound, +Inf
// included) by (listener, route, cluster).
func routeTraffic(fams []*dto.MetricFamily) ([]RouteTraffic, map[[3]string]map[float64]float64) {
	byKey := map[[3]string]*RouteTraffic{}
	latency := map[[3]string]map[float64]float64{}
	get := func(m *dto.Metric) *RouteTraffic {
		var k [3]string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "listener":
				k[0] = l.GetValue()
			case "route":
				k[1] = l.GetValue()
			case "cluster":
				k[2] = l.GetValue()
			}
		}
		rt := byKey[k]
		if rt == nil {
			rt = &RouteTraffic{Listener: k[0], Route: k[1], Cluster: k[2]}
			byKey[k] = rt
		}
		return rt
	}
	for _, f := range fams {
		switch f.GetName() {
		case "weft_requests_total":
			for _, m := range f.GetMetric() {
				rt := get(m)
				v := m.GetCounter().GetValue()
				rt.Requests += v
				if label(m, "code_class") == "5xx" {
					rt.Errors += v
				}
			}
		case "weft_request_duration_seconds":
			for _, m := range f.GetMetric() {
				rt, h := get(m), m.GetHistogram()
				b := make(map[float64]float64, len(h.GetBucket())+1)
				for _, bk := range h.GetBucket() {
					b[bk.GetUpperBound()] = float64(bk.GetCumulativeCount())
				}
				b[math.Inf(1)] = float64(h.GetSampleCount())
				latency[[3]string{rt.Listener, rt.Route, rt.Cluster}] = b
			}
		}
	}
	out := make([]RouteTraffic, 0, len(byKey))
	for _, rt := range byKey {
		out = append(out, *rt)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Listener != b.Listener {
			return a.Listener < b.Listener
		}
		if a.Route != b.Route {
			return a.Route < b.Route
		}
		return a.Cluster < b.Cluster
	})
	return out, latency
}

// label is the value of m's label name, or "".
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// pluginCosts reads each plugin's accounting out of the gathered metrics.
func pluginCosts(fams []*dto.MetricFamily) []PluginCost {
	byName := telemetry.ReadPluginCounters(fams)
	out := make([]PluginCost, 0, len(byName))
	for name, c := range byName {
		out = append(out, PluginCost{Plugin: name, PluginCounters: *c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Plugin < out[j].Plugin })
	return out
}
