package wasm

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric types of proxy_define_metric.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// histogramBounds are the upper bounds of guest histograms: powers of two
// from 1 to 2^24 (guests record in their own units, often milliseconds).
var histogramBounds = func() []float64 {
	b := make([]float64, 25)
	for i := range b {
		b[i] = math.Ldexp(1, i)
	}
	return b
}()

// guestMetric is one metric a guest defined. Metrics are keyed by plugin,
// type and name, so a reloaded plugin keeps counting where it left off.
type guestMetric struct {
	plugin, name string
	typ          uint32
	val          atomic.Int64 // counter, gauge
	sum          atomic.Uint64
	count        atomic.Uint64
	buckets      []atomic.Uint64 // histogram: per bound, not cumulative
}

type metricKey struct {
	plugin, name string
	typ          uint32
}

// Host events counted per plugin.
const (
	eventTrap = iota
	eventTimeout
	eventVMReplaced
	eventVMStartFailed
	eventFailOpen
	eventFailClosed
	eventPauseTimeout
	eventBodyTooLarge
	eventCrashBackoff
	eventInvalidHeader
	eventOverLimits
	eventRunawayBackoff
	eventVMBusy
	eventOverloaded
	numEvents
)

var eventNames = [numEvents]string{"trap", "callback_timeout", "vm_replaced", "vm_start_failed", "fail_open", "fail_closed", "pause_timeout", "body_too_large", "crash_backoff", "invalid_header", "over_limits", "runaway_backoff", "vm_busy", "overloaded"}

// pluginEvents counts host events for one plugin name (kept across reloads).
type pluginEvents struct {
	plugin   string
	n        [numEvents]atomic.Uint64
	callouts [len(dispatchReasons)]atomic.Uint64 // failed call-outs, by reason
	acct     accounting
	// loggedInvalidHeader: a filter's malformed header writes are logged
	// once per plugin, not per request.
	loggedInvalidHeader atomic.Bool
}

// metricsRegistry holds guest metrics and host events; it is the Runtime's
// prometheus.Collector.
type metricsRegistry struct {
	mu     sync.Mutex
	byKey  map[metricKey]uint32
	list   atomic.Pointer[[]*guestMetric] // id-1 → metric; copy on write
	events map[string]*pluginEvents
	// tags are the stats_tags rules (metrics_tags.go); nil: the default
	// convention.
	tags atomic.Pointer[[]StatsTag]

	descCounter, descGauge, descHist, descEvents, descCallouts *prometheus.Desc
}

func newMetricsRegistry() *metricsRegistry {
	m := &metricsRegistry{
		byKey:  make(map[metricKey]uint32),
		events: make(map[string]*pluginEvents),
		descCounter: prometheus.NewDesc("weft_wasm_guest_counter_total",
			"Counters defined by Wasm filters (proxy_define_metric).", []string{"plugin", "name"}, nil),
		descGauge: prometheus.NewDesc("weft_wasm_guest_gauge",
			"Gauges defined by Wasm filters (proxy_define_metric).", []string{"plugin", "name"}, nil),
		descHist: prometheus.NewDesc("weft_wasm_guest_histogram",
			"Histograms defined by Wasm filters (proxy_define_metric).", []string{"plugin", "name"}, nil),
		descEvents: prometheus.NewDesc("weft_wasm_events_total",
			"Wasm host events: traps, callback timeouts, VM replacements, failure-policy decisions.", []string{"plugin", "event"}, nil),
		descCallouts: prometheus.NewDesc("weft_wasm_callout_failures_total",
			"HTTP call-outs of Wasm filters that failed, by reason (the :dispatch_status the filter reads).", []string{"plugin", "reason"}, nil),
	}
	empty := []*guestMetric{}
	m.list.Store(&empty)
	return m
}

// define returns the id of the metric (plugin, typ, name), creating it.
func (m *metricsRegistry) define(plugin string, typ uint32, name string) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := metricKey{plugin, name, typ}
	if id, ok := m.byKey[k]; ok {
		return id
	}
	gm := &guestMetric{plugin: plugin, name: name, typ: typ}
	if typ == metricHistogram {
		gm.buckets = make([]atomic.Uint64, len(histogramBounds))
	}
	old := *m.list.Load()
	nl := make([]*guestMetric, len(old)+1)
	copy(nl, old)
	nl[len(old)] = gm
	m.list.Store(&nl)
	id := uint32(len(nl))
	m.byKey[k] = id
	return id
}

// get returns the metric with id, or nil.
func (m *metricsRegistry) get(id uint32) *guestMetric {
	l := *m.list.Load()
	if id == 0 || int(id) > len(l) {
		return nil
	}
	return l[id-1]
}

func (g *guestMetric) record(v uint64) {
	switch g.typ {
	case metricGauge:
		g.val.Store(int64(v))
	case metricHistogram:
		g.sum.Add(v)
		g.count.Add(1)
		for i, b := range histogramBounds {
			if float64(v) <= b {
				g.buckets[i].Add(1)
				return
			}
		}
	}
}

// eventsFor returns the event counters of a plugin name.
func (m *metricsRegistry) eventsFor(plugin string) *pluginEvents {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.events[plugin]
	if e == nil {
		e = &pluginEvents{plugin: plugin}
		m.events[plugin] = e
	}
	return e
}

// allEvents lists every plugin name's counters.
func (m *metricsRegistry) allEvents() []*pluginEvents {
	m.mu.Lock()
	defer m.mu.Unlock()
	evs := make([]*pluginEvents, 0, len(m.events))
	for _, e := range m.events {
		evs = append(evs, e)
	}
	return evs
}

// Describe implements prometheus.Collector.
func (m *metricsRegistry) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.descCounter
	ch <- m.descGauge
	ch <- m.descHist
	ch <- m.descEvents
	ch <- m.descCallouts
}

// Collect implements prometheus.Collector.
func (m *metricsRegistry) Collect(ch chan<- prometheus.Metric) {
	rules := m.tagRules()
	for _, g := range *m.list.Load() {
		if _, _, _, tagged := splitTags(g.name, rules); tagged {
			continue // exported by the TaggedCollector
		}
		switch g.typ {
		case metricCounter:
			ch <- prometheus.MustNewConstMetric(m.descCounter, prometheus.CounterValue, float64(g.val.Load()), g.plugin, g.name)
		case metricGauge:
			ch <- prometheus.MustNewConstMetric(m.descGauge, prometheus.GaugeValue, float64(g.val.Load()), g.plugin, g.name)
		case metricHistogram:
			buckets := make(map[float64]uint64, len(histogramBounds))
			var cum uint64
			for i, b := range histogramBounds {
				cum += g.buckets[i].Load()
				buckets[b] = cum
			}
			ch <- prometheus.MustNewConstHistogram(m.descHist, g.count.Load(), float64(g.sum.Load()), buckets, g.plugin, g.name)
		}
	}
	m.mu.Lock()
	evs := make([]*pluginEvents, 0, len(m.events))
	for _, e := range m.events {
		evs = append(evs, e)
	}
	m.mu.Unlock()
	for _, e := range evs {
		for i := range e.n {
			ch <- prometheus.MustNewConstMetric(m.descEvents, prometheus.CounterValue, float64(e.n[i].Load()), e.plugin, eventNames[i])
		}
		for i := range e.callouts {
			ch <- prometheus.MustNewConstMetric(m.descCallouts, prometheus.CounterValue, float64(e.callouts[i].Load()), e.plugin, dispatchReasons[i])
		}
	}
}
