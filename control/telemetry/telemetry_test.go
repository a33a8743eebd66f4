package telemetry

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestQuantile(t *testing.T) {
	// 100 observations: 50 ≤ 10ms, 40 in (10ms, 100ms], 10 in (100ms, 1s].
	b := map[float64]float64{0.01: 50, 0.1: 90, 1: 100, math.Inf(1): 100}
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.01},
		{0.7, 0.01 + 0.09*0.5},
		{0.99, 0.1 + 0.9*0.9},
		{0.25, 0.005},
	} {
		if got := Quantile(c.q, b); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := Quantile(0.99, map[float64]float64{0.1: 1, math.Inf(1): 10}); got != 0.1 {
		t.Errorf("a quantile in +Inf: %v, want the highest finite bound 0.1", got)
	}
	if !math.IsNaN(Quantile(0.5, map[float64]float64{})) {
		t.Error("an empty histogram should give NaN")
	}
}

const exposition = `# TYPE weft_requests_total counter
weft_requests_total{cluster="orders.shop.v1",code_class="2xx",listener="outbound",route="r"} 90
weft_requests_total{cluster="orders.shop.v1",code_class="5xx",listener="outbound",route="r"} 10
weft_requests_total{cluster="local_app",code_class="2xx",listener="inbound",route="l"} 7
# TYPE weft_request_duration_seconds histogram
weft_request_duration_seconds_bucket{cluster="orders.shop.v1",listener="outbound",route="r",le="0.01"} 50
weft_request_duration_seconds_bucket{cluster="orders.shop.v1",listener="outbound",route="r",le="0.1"} 100
weft_request_duration_seconds_bucket{cluster="orders.shop.v1",listener="outbound",route="r",le="+Inf"} 100
weft_request_duration_seconds_sum{cluster="orders.shop.v1",listener="outbound",route="r"} 3
weft_request_duration_seconds_count{cluster="orders.shop.v1",listener="outbound",route="r"} 100
`

func TestAggregate(t *testing.T) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	first := reduce(fams, t0)
	second := reduce(fams, t0.Add(2*time.Second))
	// The second sample has 100 more requests, 20 more errors.
	c := second.clusters["orders.shop.v1"]
	c.requests, c.errors, c.count = 200, 30, 200
	for ub := range c.buckets {
		c.buckets[ub] *= 2
	}
	s := New(Options{Targets: func() []Target { return nil }})
	s.samples["n1"] = &nodeSamples{admin: "x", prev: first, last: second}
	v := s.View()
	if len(v.Services) != 1 {
		t.Fatalf("services: %+v", v.Services)
	}
	got := v.Services[0]
	if got.Service != "shop/orders" || got.RequestsPerSecond != 50 || got.ErrorRate != 0.2 || got.RequestsTotal != 200 ||
		got.Versions["v1"] != 50 || got.LatencyWindow != "last_interval" || math.Abs(got.P50Ms-10) > 1e-9 || got.Sidecars != 1 {
		t.Fatalf("view: %+v", got)
	}
}

func pluginExposition(calls, guest, mem float64, growing int) string {
	return fmt.Sprintf(`# TYPE weft_wasm_plugin_calls_total counter
weft_wasm_plugin_calls_total{plugin="authz"} %v
# TYPE weft_wasm_plugin_guest_seconds_total counter
weft_wasm_plugin_guest_seconds_total{plugin="authz"} %v
# TYPE weft_wasm_plugin_memory_bytes gauge
weft_wasm_plugin_memory_bytes{plugin="authz"} %v
# TYPE weft_wasm_plugin_memory_high_water_bytes gauge
weft_wasm_plugin_memory_high_water_bytes{plugin="authz"} %v
# TYPE weft_wasm_plugin_memory_growing gauge
weft_wasm_plugin_memory_growing{plugin="authz"} %d
# TYPE weft_wasm_events_total counter
weft_wasm_events_total{event="trap",plugin="authz"} 2
weft_wasm_events_total{event="callback_timeout",plugin="authz"} 1
weft_wasm_events_total{event="vm_replaced",plugin="authz"} 3
# TYPE weft_wasm_callout_failures_total counter
weft_wasm_callout_failures_total{plugin="authz",reason="timeout"} 4
weft_wasm_callout_failures_total{plugin="authz",reason="no_cluster"} 1
`, calls, guest, mem, mem, growing)
}

// Plugins are aggregated across the sidecars that run them: rates over the
// last interval, memory summed, failures added, leaks named by sidecar.
func TestAggregatePlugins(t *testing.T) {
	parse := func(s string) *sample {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return reduce(fams, time.Time{})
	}
	t0 := time.Now()
	s := New(Options{Targets: func() []Target { return nil }})
	for _, n := range []struct {
		node    string
		growing int
	}{{"n1", 0}, {"n2", 1}} {
		first, second := parse(pluginExposition(1000, 1, 1<<20, n.growing)), parse(pluginExposition(3000, 1.5, 2<<20, n.growing))
		first.at, second.at = t0, t0.Add(2*time.Second)
		s.samples[n.node] = &nodeSamples{admin: "x", prev: first, last: second}
	}
	v := s.View()
	if len(v.Plugins) != 1 {
		t.Fatalf("plugins: %+v", v.Plugins)
	}
	got := v.Plugins[0]
	want := PluginView{Plugin: "authz", Sidecars: 2, CallsPerSecond: 2000, GuestMsPerSecond: 500, MemoryBytes: 4 << 20,
		HighWaterBytes: 2 << 20, Traps: 4, Timeouts: 2, VMRestarts: 6, CalloutFailures: 10, MemoryGrowing: []string{"n2"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("plugin view\n got %+v\nwant %+v", got, want)
	}
}
