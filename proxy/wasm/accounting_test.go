package wasm

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the value of metric name for plugin (and whether there
// is one).
func gather(t *testing.T, rt *Runtime, name, plugin string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(rt.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" && l.GetValue() == plugin {
					return value(m), true
				}
			}
		}
	}
	return 0, false
}

// gatherAll collects once: plugin → metric name → value.
func gatherAll(t *testing.T, rt *Runtime) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(rt.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" {
					if out[l.GetValue()] == nil {
						out[l.GetValue()] = map[string]float64{}
					}
					if m.Counter != nil || m.Gauge != nil {
						out[l.GetValue()][mf.GetName()] = value(m)
					}
				}
			}
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// Each plugin's calls, time in guest code and memory are accounted, and a
// plugin whose memory grows at every sample is flagged; one that holds
// steady is not.
func TestPluginAccounting(t *testing.T) {
	old := memSampleInterval
	memSampleInterval = 0 // every collection is a sample
	t.Cleanup(func() { memSampleInterval = old })
	rt := newRuntime(t)
	steady := load(t, rt, PluginSpec{Name: "steady", Module: wat(t, "noop")}, Env{})

	for range 3 {
		runStream(steady, newStream("/"))
	}
	callsBefore, _ := gather(t, rt, "weft_wasm_plugin_calls_total", "steady")
	for range 5 {
		runStream(steady, newStream("/"))
	}
	calls, _ := gather(t, rt, "weft_wasm_plugin_calls_total", "steady")
	// A stream is at least context create, request headers, response
	// headers, log, done.
	if calls-callsBefore < 5*5 {
		t.Errorf("5 streams added %v calls, want at least 25", calls-callsBefore)
	}
	if vms, _ := gather(t, rt, "weft_wasm_plugin_vms", "steady"); vms != 1 {
		t.Errorf("vms %v, want 1", vms)
	}

	// The body the chain holds for a stream is the plugin's host memory
	// while the stream lives.
	s := newStream("/")
	s.Request.SetBodyString(strings.Repeat("b", 5000))
	f := steady.NewStreamFilter(s)
	f.OnRequestHeaders(s, false)
	f.OnRequestBody(s, true)
	if h := gatherAll(t, rt)["steady"]["weft_wasm_plugin_host_memory_bytes"]; h != 5000 {
		t.Errorf("host memory while the stream holds 5000 body bytes: %v", h)
	}
	f.OnLog(s)
	f.OnDone(s)
	if h := gatherAll(t, rt)["steady"]["weft_wasm_plugin_host_memory_bytes"]; h != 0 {
		t.Errorf("host memory after the stream: %v, want 0", h)
	}

	// Loaded now, so every collection below is one of its samples.
	leak := load(t, rt, PluginSpec{Name: "leak", Module: wat(t, "leak")}, Env{})
	var mem []float64
	for i := range memGrowingSamples + 1 {
		runStream(leak, newStream("/"))
		runStream(steady, newStream("/"))
		all := gatherAll(t, rt) // one collection: one sample
		mem = append(mem, all["leak"]["weft_wasm_plugin_memory_bytes"])
		if want := i >= memGrowingSamples-1; (all["leak"]["weft_wasm_plugin_memory_growing"] == 1) != want {
			t.Fatalf("after %d leaking requests: growing %v, want %v (memory %v)", i+1, all["leak"]["weft_wasm_plugin_memory_growing"], want, mem)
		}
		if all["steady"]["weft_wasm_plugin_memory_growing"] != 0 {
			t.Fatal("a plugin with steady memory flagged as growing")
		}
	}
	for i := 1; i < len(mem); i++ {
		if mem[i]-mem[i-1] != 65536 {
			t.Fatalf("memory samples %v: want one 64 KiB page more per request", mem)
		}
	}
	if hw, _ := gather(t, rt, "weft_wasm_plugin_memory_high_water_bytes", "leak"); hw != mem[len(mem)-1] {
		t.Errorf("high water %v, want %v", hw, mem[len(mem)-1])
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}

// BenchmarkAccounting is what accounting adds to one call into the guest.
func BenchmarkAccounting(b *testing.B) {
	rt := newRuntime(b)
	p := load(b, rt, PluginSpec{Name: "noop", Module: wat(b, "noop")}, Env{})
	_, v := p.pick()
	b.ReportAllocs()
	for b.Loop() {
		v.account()
	}
}

// Time in guest code is sampled by the deadline watchdog: a call stopped
// at its deadline is charged at least the deadline, to its own plugin.
func TestGuestTimeIsSampled(t *testing.T) {
	rt := newRuntime(t)
	spin := load(t, rt, PluginSpec{Name: "spin", Module: wat(t, "trap"), VMConfig: []byte{'L'}, CallbackTimeout: 50 * time.Millisecond}, Env{})
	load(t, rt, PluginSpec{Name: "idle", Module: wat(t, "noop")}, Env{})
	runStream(spin, newStream("/", "X-Boom", "1"))
	if n := spin.events.n[eventTimeout].Load(); n != 1 {
		t.Fatalf("the spinning call was not stopped by its deadline (timeouts %d)", n)
	}
	all := gatherAll(t, rt)
	if s := all["spin"]["weft_wasm_plugin_guest_seconds_total"]; s < 0.05 {
		t.Errorf("a call stopped at its 50 ms deadline was charged %v s", s)
	}
	if s := all["idle"]["weft_wasm_plugin_guest_seconds_total"]; s >= 0.05 {
		t.Errorf("a plugin that ran nothing long was charged %v s", s)
	}
}
