package telemetry

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/mesh"
	ptelemetry "github.com/weftmesh/weft/proxy/telemetry"
)

// Metric names scraped from sidecars.
const (
	requestsMetric = "weft_requests_total"
	durationMetric = "weft_request_duration_seconds"
)

// Target is one sidecar's admin address.
type Target struct {
	Node  string
	Admin string // host:port
}

// Options configure a Scraper.
type Options struct {
	// Interval between scrapes (default 10s).
	Interval time.Duration
	// Timeout bounds one scrape (default 2s).
	Timeout time.Duration
	// Targets lists the sidecars to scrape now.
	Targets func() []Target
	Logger  *zap.Logger
}

// Scraper periodically scrapes sidecars and aggregates by service.
type Scraper struct {
	o      Options
	log    *zap.Logger
	client *http.Client

	mu      sync.Mutex
	samples map[string]*nodeSamples // by node
}

type nodeSamples struct {
	admin      string
	prev, last *sample
	lastErr    string
}

// sample is one scrape of one sidecar, reduced to per-cluster counters.
type sample struct {
	at       time.Time
	clusters map[string]*clusterCounts
	plugins  map[string]*ptelemetry.PluginCounters
}

type clusterCounts struct {
	requests float64
	errors   float64             // 5xx
	buckets  map[float64]float64 // cumulative count by upper bound (+Inf included)
	count    float64
}

// New makes a scraper; call Run to start it.
func New(o Options) *Scraper {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Scraper{o: o, log: o.Logger, client: &http.Client{Timeout: o.Timeout}, samples: map[string]*nodeSamples{}}
}

// Run scrapes every Interval until ctx ends.
func (s *Scraper) Run(ctx context.Context) {
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.ScrapeOnce(ctx)
		}
	}
}

// ScrapeOnce scrapes every target now, concurrently.
func (s *Scraper) ScrapeOnce(ctx context.Context) {
	targets := s.o.Targets()
	var wg sync.WaitGroup
	for _, t := range targets {
		if t.Admin == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			smp, err := s.scrape(ctx, t.Admin)
			s.mu.Lock()
			defer s.mu.Unlock()
			ns := s.samples[t.Node]
			if ns == nil || ns.admin != t.Admin {
				ns = &nodeSamples{admin: t.Admin} // a restarted sidecar's counters start over
				s.samples[t.Node] = ns
			}
			if err != nil {
				ns.lastErr = err.Error()
				s.log.Debug("scrape failed", zap.String("node", t.Node), zap.String("admin", t.Admin), zap.Error(err))
				return
			}
			ns.lastErr = ""
			ns.prev, ns.last = ns.last, smp
		}()
	}
	wg.Wait()
	// Forget sidecars that are gone.
	keep := map[string]bool{}
	for _, t := range targets {
		keep[t.Node] = true
	}
	s.mu.Lock()
	for n := range s.samples {
		if !keep[n] {
			delete(s.samples, n)
		}
	}
	s.mu.Unlock()
}

func (s *Scraper) scrape(ctx context.Context, admin string) (*sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/stats/prometheus", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /stats/prometheus: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /stats/prometheus: %w", err)
	}
	return reduce(fams, time.Now()), nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// reduce keeps the request counters and latency histograms by cluster.
func reduce(fams map[string]*dto.MetricFamily, at time.Time) *sample {
	smp := &sample{at: at, clusters: map[string]*clusterCounts{}, plugins: ptelemetry.ReadPluginCounters(slices.Collect(maps.Values(fams)))}
	get := func(cl string) *clusterCounts {
		c := smp.clusters[cl]
		if c == nil {
			c = &clusterCounts{buckets: map[float64]float64{}}
			smp.clusters[cl] = c
		}
		return c
	}
	if f := fams[requestsMetric]; f != nil {
		for _, m := range f.GetMetric() {
			cl := label(m, "cluster")
			if cl == "" {
				continue
			}
			v := m.GetCounter().GetValue()
			c := get(cl)
			c.requests += v
			if label(m, "code_class") == "5xx" {
				c.errors += v
			}
		}
	}
	if f := fams[durationMetric]; f != nil {
		for _, m := range f.GetMetric() {
			cl := label(m, "cluster")
			if cl == "" {
				continue
			}
			h := m.GetHistogram()
			c := get(cl)
			c.count += float64(h.GetSampleCount())
			hasInf := false
			for _, b := range h.GetBucket() {
				c.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				hasInf = hasInf || math.IsInf(b.GetUpperBound(), 1)
			}
			if !hasInf { // the +Inf bucket is implicit in some expositions
				c.buckets[math.Inf(1)] += float64(h.GetSampleCount())
			}
		}
	}
	return smp
}

// PluginView is one Wasm plugin across the mesh: summed over the sidecars
// that run it.
type PluginView struct {
	Plugin   string `json:"plugin"`
	Sidecars int    `json:"sidecars"`
	// CallsPerSecond and GuestMsPerSecond cover each sidecar's last scrape
	// interval: the second is the plugin's CPU cost, in ms of guest code
	// per second.
	CallsPerSecond   float64 `json:"calls_per_second"`
	GuestMsPerSecond float64 `json:"guest_ms_per_second"`
	MemoryBytes      float64 `json:"memory_bytes"`
	// HighWaterBytes is the largest VM on any sidecar.
	HighWaterBytes  float64 `json:"memory_high_water_bytes"`
	Traps           float64 `json:"traps"`
	Timeouts        float64 `json:"callback_timeouts"`
	VMRestarts      float64 `json:"vm_restarts"`
	CalloutFailures float64 `json:"callout_failures"`
	// MemoryGrowing lists the sidecars where its memory only grows.
	MemoryGrowing []string `json:"memory_growing,omitempty"`
}

// ServiceView is one service's traffic, as seen by the sidecars calling it.
type ServiceView struct {
	Service string `json:"service"` // NAMESPACE/NAME
	// RequestsPerSecond and ErrorRate (share of 5xx) cover the last scrape
	// interval of each sidecar.
	RequestsPerSecond float64 `json:"requests_per_second"`
	ErrorRate         float64 `json:"error_rate"`
	// P50Ms and P99Ms come from the latency histogram over the last
	// interval, or over all time when the last interval had no requests
	// (LatencyWindow says which).
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	LatencyWindow string  `json:"latency_window"`
	// RequestsTotal is every request counted since the sidecars started.
	RequestsTotal float64 `json:"requests_total"`
	// Versions breaks requests/s down by version (routes to one version).
	Versions map[string]float64 `json:"versions_requests_per_second,omitempty"`
	// Sidecars is how many sidecars reported traffic to this service.
	Sidecars int `json:"sidecars"`
}

// SidecarView is one scrape target's state.
type SidecarView struct {
	Node       string    `json:"node"`
	Admin      string    `json:"admin"`
	LastScrape time.Time `json:"last_scrape,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
}

// EdgeView is the traffic one sidecar sends to one service (an edge of
// the mesh graph), over the sidecar's last scrape interval.
type EdgeView struct {
	FromNode          string  `json:"from_node"`
	ToService         string  `json:"to_service"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	ErrorRate         float64 `json:"error_rate"`
	// P99Ms is over the last interval, or all time when it had no requests.
	P99Ms         float64 `json:"p99_ms"`
	RequestsTotal float64 `json:"requests_total"`
}

// View is the mesh-wide telemetry.
type View struct {
	Services []ServiceView `json:"services"`
	Sidecars []SidecarView `json:"sidecars"`
	Edges    []EdgeView    `json:"edges"`
	Plugins  []PluginView  `json:"plugins"`
}

// edgeAgg accumulates one edge like agg does one service.
type edgeAgg struct {
	view                   EdgeView
	windowBuckets, allBkts map[float64]float64
	windowReqs, windowErrs float64
}

type agg struct {
	view                     ServiceView
	windowBuckets, allBucket map[float64]float64
	windowCount, allCount    float64
	windowErrs, windowReqs   float64
	nodes                    map[string]bool
}

// View aggregates the last samples by service.
func (s *Scraper) View() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	byService := map[string]*agg{}
	byEdge := map[[2]string]*edgeAgg{}
	byPlugin := map[string]*PluginView{}
	var v View
	for node, ns := range s.samples {
		sv := SidecarView{Node: node, Admin: ns.admin, LastError: ns.lastErr}
		if ns.last != nil {
			sv.LastScrape = ns.last.at
		}
		v.Sidecars = append(v.Sidecars, sv)
		if ns.last == nil {
			continue
		}
		secs := 0.0
		if ns.prev != nil {
			secs = ns.last.at.Sub(ns.prev.at).Seconds()
		}
		for name, c := range ns.last.plugins {
			pv := byPlugin[name]
			if pv == nil {
				pv = &PluginView{Plugin: name}
				byPlugin[name] = pv
			}
			pv.Sidecars++
			pv.MemoryBytes += c.MemoryBytes
			pv.HighWaterBytes = math.Max(pv.HighWaterBytes, c.HighWaterBytes)
			pv.Traps += c.Traps
			pv.Timeouts += c.Timeouts
			pv.VMRestarts += c.VMReplaced
			pv.CalloutFailures += c.CalloutFailures
			if c.MemoryGrowing {
				pv.MemoryGrowing = append(pv.MemoryGrowing, node)
			}
			if p := ns.prev; p != nil && secs > 0 && p.plugins[name] != nil {
				pv.CallsPerSecond += math.Max(0, c.Calls-p.plugins[name].Calls) / secs
				pv.GuestMsPerSecond += 1000 * math.Max(0, c.GuestSeconds-p.plugins[name].GuestSeconds) / secs
			}
		}
		for cl, c := range ns.last.clusters {
			svc, version, ok := mesh.ServiceOfCluster(cl)
			if !ok {
				continue
			}
			a := byService[svc]
			if a == nil {
				a = &agg{view: ServiceView{Service: svc, Versions: map[string]float64{}}, windowBuckets: map[float64]float64{}, allBucket: map[float64]float64{}, nodes: map[string]bool{}}
				byService[svc] = a
			}
			if c.requests > 0 {
				a.nodes[node] = true
			}
			e := byEdge[[2]string{node, svc}]
			if e == nil {
				e = &edgeAgg{view: EdgeView{FromNode: node, ToService: svc}, windowBuckets: map[float64]float64{}, allBkts: map[float64]float64{}}
				byEdge[[2]string{node, svc}] = e
			}
			e.view.RequestsTotal += c.requests
			for ub, n := range c.buckets {
				e.allBkts[ub] += n
			}
			a.view.RequestsTotal += c.requests
			a.allCount += c.count
			for ub, n := range c.buckets {
				a.allBucket[ub] += n
			}
			if ns.prev == nil || secs <= 0 {
				continue
			}
			p := ns.prev.clusters[cl]
			if p == nil {
				p = &clusterCounts{buckets: map[float64]float64{}}
			}
			dReq := math.Max(0, c.requests-p.requests)
			a.windowReqs += dReq
			a.windowErrs += math.Max(0, c.errors-p.errors)
			a.view.RequestsPerSecond += dReq / secs
			if version != "" {
				a.view.Versions[version] += dReq / secs
			}
			a.windowCount += math.Max(0, c.count-p.count)
			for ub, n := range c.buckets {
				a.windowBuckets[ub] += math.Max(0, n-p.buckets[ub])
				e.windowBuckets[ub] += math.Max(0, n-p.buckets[ub])
			}
			e.view.RequestsPerSecond += dReq / secs
			e.windowReqs += dReq
			e.windowErrs += math.Max(0, c.errors-p.errors)
		}
	}
	for _, a := range byService {
		if a.windowReqs > 0 {
			a.view.ErrorRate = a.windowErrs / a.windowReqs
		}
		buckets, count, window := a.windowBuckets, a.windowCount, "last_interval"
		if count == 0 {
			buckets, count, window = a.allBucket, a.allCount, "all_time"
		}
		if count > 0 {
			a.view.P50Ms = Quantile(0.5, buckets) * 1000
			a.view.P99Ms = Quantile(0.99, buckets) * 1000
			a.view.LatencyWindow = window
		}
		if len(a.view.Versions) == 0 {
			a.view.Versions = nil
		}
		a.view.Sidecars = len(a.nodes)
		v.Services = append(v.Services, a.view)
	}
	for _, e := range byEdge {
		if e.windowReqs > 0 {
			e.view.ErrorRate = e.windowErrs / e.windowReqs
		}
		buckets := e.windowBuckets
		if e.windowReqs == 0 {
			buckets = e.allBkts
		}
		if q := Quantile(0.99, buckets); !math.IsNaN(q) {
			e.view.P99Ms = q * 1000
		}
		v.Edges = append(v.Edges, e.view)
	}
	if v.Edges == nil {
		v.Edges = []EdgeView{}
	}
	sort.Slice(v.Edges, func(i, j int) bool {
		if v.Edges[i].FromNode != v.Edges[j].FromNode {
			return v.Edges[i].FromNode < v.Edges[j].FromNode
		}
		return v.Edges[i].ToService < v.Edges[j].ToService
	})
	sort.Slice(v.Services, func(i, j int) bool { return v.Services[i].Service < v.Services[j].Service })
	for _, pv := range byPlugin {
		sort.Strings(pv.MemoryGrowing)
		v.Plugins = append(v.Plugins, *pv)
	}
	sort.Slice(v.Plugins, func(i, j int) bool { return v.Plugins[i].Plugin < v.Plugins[j].Plugin })
	sort.Slice(v.Sidecars, func(i, j int) bool { return v.Sidecars[i].Node < v.Sidecars[j].Node })
	return v
}

// Quantile estimates the q-quantile (0..1) from cumulative bucket counts
// keyed by upper bound; see proxy/telemetry.Quantile, which the sidecar's
// own /ui uses too.
func Quantile(q float64, buckets map[float64]float64) float64 {
	return ptelemetry.Quantile(q, buckets)
}
