package wasm

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Per-plugin accounting: what each plugin costs, kept by plugin name across
// reloads like its events. A call into the guest adds one call and, when
// its linear memory changed, the new size: a few nanoseconds, no clock read
// (a clock read costs 0.1-0.3 µs on the CI machine, as much as the call).
// Time in guest code is sampled by the deadline watchdog, which already
// looks at every VM each tick; the rest is computed when metrics are
// collected.

// memSampleInterval spaces the samples that decide whether a plugin's
// memory only grows; memGrowingSamples in a row, each higher than the last,
// flag it (by default three minutes of steady growth). Tests shorten it.
var memSampleInterval = 30 * time.Second

const memGrowingSamples = 6

// accounting is the part of pluginEvents that measures cost.
type accounting struct {
	calls      atomic.Uint64
	guestNanos atomic.Uint64
	memHigh    atomic.Uint64 // the most linear memory one VM of the plugin had
	// hostBytes is the body data the host holds for the plugin's streams
	// (what they buffered, or the chunk in hand).
	hostBytes atomic.Int64

	growMu   sync.Mutex
	lastAt   time.Time
	samples  []uint64 // the plugin's total linear memory, oldest first
	replaced uint64   // vm_replaced at the last sample: a new VM restarts the window
}

// account records one call into v's guest.
func (v *vm) account() {
	v.p.events.acct.calls.Add(1)
	v.accountMemory()
}

// accountMemory records v's linear memory after a call.
func (v *vm) accountMemory() {
	a := &v.p.events.acct
	if v.mem == nil {
		return
	}
	sz := uint64(v.mem.Size())
	if sz == v.memBytes.Load() {
		return
	}
	v.memBytes.Store(sz)
	for {
		h := a.memHigh.Load()
		if sz <= h || a.memHigh.CompareAndSwap(h, sz) {
			return
		}
	}
}

// sample adds the plugin's current memory to its growth window when the
// last sample is old enough, and reports whether the window shows memory
// that only grows.
func (a *accounting) sample(now time.Time, total, replaced uint64) bool {
	a.growMu.Lock()
	defer a.growMu.Unlock()
	if replaced != a.replaced { // VMs were rebuilt: their memory started over
		a.samples, a.replaced = a.samples[:0], replaced
	}
	if a.lastAt.IsZero() || now.Sub(a.lastAt) >= memSampleInterval {
		a.lastAt = now
		a.samples = append(a.samples, total)
		if len(a.samples) > memGrowingSamples {
			a.samples = a.samples[len(a.samples)-memGrowingSamples:]
		}
	}
	if len(a.samples) < memGrowingSamples {
		return false
	}
	for i := 1; i < len(a.samples); i++ {
		if a.samples[i] <= a.samples[i-1] {
			return false
		}
	}
	return true
}

// runtimeCollector exports guest metrics, host events and per-plugin
// accounting.
type runtimeCollector struct{ rt *Runtime }

var (
	descCalls = prometheus.NewDesc("weft_wasm_plugin_calls_total",
		"Calls into the plugin's guest code (every callback, start included).", []string{"plugin"}, nil)
	descGuestSeconds = prometheus.NewDesc("weft_wasm_plugin_guest_seconds_total",
		"Time spent inside calls into the plugin's guest code (host functions it calls included), sampled by the deadline watchdog every few milliseconds.", []string{"plugin"}, nil)
	descMemory = prometheus.NewDesc("weft_wasm_plugin_memory_bytes",
		"Linear memory of the plugin's live VMs, summed.", []string{"plugin"}, nil)
	descMemoryHigh = prometheus.NewDesc("weft_wasm_plugin_memory_high_water_bytes",
		"The most linear memory one VM of the plugin has had.", []string{"plugin"}, nil)
	descVMs = prometheus.NewDesc("weft_wasm_plugin_vms",
		"Live VMs of the plugin.", []string{"plugin"}, nil)
	descHostMemory = prometheus.NewDesc("weft_wasm_plugin_host_memory_bytes",
		"Body data the host holds for the plugin's streams (buffered for it, or the chunk its callback sees).", []string{"plugin"}, nil)
	descGrowing = prometheus.NewDesc("weft_wasm_plugin_memory_growing",
		"1 when the plugin's memory grew at each of its last samples (a leak, or a cache without a bound).", []string{"plugin"}, nil)
)

func (c runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	c.rt.metrics.Describe(ch)
	for _, d := range []*prometheus.Desc{descCalls, descGuestSeconds, descMemory, descMemoryHigh, descVMs, descGrowing, descHostMemory} {
		ch <- d
	}
}

func (c runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	c.rt.metrics.Collect(ch)
	type live struct {
		mem, vms uint64
		events   *pluginEvents
	}
	byName := map[string]*live{}
	c.rt.mu.Lock()
	for p := range c.rt.plugins {
		l := byName[p.spec.Name]
		if l == nil {
			l = &live{events: p.events}
			byName[p.spec.Name] = l
		}
		for _, s := range p.slots {
			if v := s.vm.Load(); v != nil {
				l.mem += v.memBytes.Load()
				l.vms++
			}
		}
	}
	c.rt.mu.Unlock()
	now := time.Now()
	for _, e := range c.rt.metrics.allEvents() {
		a := &e.acct
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(a.calls.Load()), e.plugin)
		ch <- prometheus.MustNewConstMetric(descGuestSeconds, prometheus.CounterValue, float64(a.guestNanos.Load())/1e9, e.plugin)
		ch <- prometheus.MustNewConstMetric(descMemoryHigh, prometheus.GaugeValue, float64(a.memHigh.Load()), e.plugin)
		ch <- prometheus.MustNewConstMetric(descHostMemory, prometheus.GaugeValue, float64(a.hostBytes.Load()), e.plugin)
		l := byName[e.plugin]
		if l == nil {
			continue // no live plugin of that name: its gauges are gone
		}
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(l.mem), e.plugin)
		ch <- prometheus.MustNewConstMetric(descVMs, prometheus.GaugeValue, float64(l.vms), e.plugin)
		growing := 0.0
		if a.sample(now, l.mem, e.n[eventVMReplaced].Load()) {
			growing = 1
		}
		ch <- prometheus.MustNewConstMetric(descGrowing, prometheus.GaugeValue, growing, e.plugin)
	}
}
