package telemetry

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// family returns the gathered family name, or nil.
func family(t *testing.T, m *Metrics, name string) *dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	return nil
}

// labelsOf flattens a metric's labels.
func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// find returns the metric of family name whose labels include want.
func find(t *testing.T, m *Metrics, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := family(t, m, name)
	if f == nil {
		t.Fatalf("no family %s", name)
	}
next:
	for _, mm := range f.GetMetric() {
		have := labelsOf(mm)
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return mm
	}
	t.Fatalf("no %s%v", name, want)
	return nil
}

func TestRouteStatsCountByStatusClass(t *testing.T) {
	m := NewMetrics()
	rs := m.Route("in", "orders", "orders-v1")
	for _, st := range []int{200, 204, 299, 301, 404, 503, 599, 0, 99, 600, 101} {
		rs.Record(st, 2*time.Millisecond)
	}
	want := map[string]float64{"2xx": 3, "3xx": 1, "4xx": 1, "5xx": 2, "1xx": 1, "none": 3}
	for class, n := range want {
		got := find(t, m, "weft_requests_total", map[string]string{"listener": "in", "route": "orders", "cluster": "orders-v1", "code_class": class})
		if got.GetCounter().GetValue() != n {
			t.Errorf("code_class %s = %v, want %v", class, got.GetCounter().GetValue(), n)
		}
	}
	h := find(t, m, "weft_request_duration_seconds", map[string]string{"route": "orders"}).GetHistogram()
	if h.GetSampleCount() != 11 || h.GetSampleSum() < 0.0219 || h.GetSampleSum() > 0.0221 {
		t.Fatalf("latency: %d samples, sum %v; want 11 and 0.022s", h.GetSampleCount(), h.GetSampleSum())
	}
	// Each observation lands in the bucket of its value.
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.0025 {
			want = 11
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

// TestRouteStatsAreKeptApart: two triples that differ in one label count
// separately (a label swapped in Route would merge them).
func TestRouteStatsAreKeptApart(t *testing.T) {
	m := NewMetrics()
	m.Route("in", "r", "a").Record(200, time.Millisecond)
	m.Route("in", "r", "b").Record(200, time.Millisecond)
	m.Route("in", "r", "b").Record(200, time.Millisecond)
	m.Route("out", "r", "a").Record(200, time.Millisecond)
	for _, tc := range []struct {
		listener, cluster string
		n                 float64
	}{{"in", "a", 1}, {"in", "b", 2}, {"out", "a", 1}} {
		got := find(t, m, "weft_requests_total", map[string]string{"listener": tc.listener, "route": "r", "cluster": tc.cluster, "code_class": "2xx"})
		if got.GetCounter().GetValue() != tc.n {
			t.Errorf("%s/%s = %v, want %v", tc.listener, tc.cluster, got.GetCounter().GetValue(), tc.n)
		}
	}
}

func TestClusterStatsNames(t *testing.T) {
	m := NewMetrics()
	cs := m.Cluster("orders")
	cs.Requests.Add(5)
	cs.Retries.Add(4)
	cs.Timeouts.Add(3)
	cs.BudgetExhausted.Add(2)
	cs.ConnectFailures.Add(1)
	cs.Resets.Add(6)
	cs.NoHealthy.Add(7)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"weft_upstream_requests_total", map[string]string{"cluster": "orders"}, 5},
		{"weft_upstream_retries_total", map[string]string{"cluster": "orders"}, 4},
		{"weft_upstream_timeouts_total", map[string]string{"cluster": "orders"}, 3},
		{"weft_retry_budget_exhausted_total", map[string]string{"cluster": "orders"}, 2},
		{"weft_upstream_failures_total", map[string]string{"cluster": "orders", "kind": "connect_failure"}, 1},
		{"weft_upstream_failures_total", map[string]string{"cluster": "orders", "kind": "reset"}, 6},
		{"weft_upstream_failures_total", map[string]string{"cluster": "orders", "kind": "no_healthy_upstream"}, 7},
	} {
		if got := find(t, m, tc.name, tc.labels).GetCounter().GetValue(); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The same cluster resolves to the same counters (a new snapshot keeps
	// counting where the old one was).
	m.Cluster("orders").Requests.Inc()
	if got := find(t, m, "weft_upstream_requests_total", map[string]string{"cluster": "orders"}).GetCounter().GetValue(); got != 6 {
		t.Errorf("after a second Cluster(\"orders\"): %v, want 6", got)
	}
}

func TestActiveReloadsAndVersion(t *testing.T) {
	m := NewMetrics()
	a := m.Active("in")
	a.Inc()
	a.Inc()
	a.Dec()
	if got := find(t, m, "weft_active_requests", map[string]string{"listener": "in"}).GetGauge().GetValue(); got != 1 {
		t.Errorf("active = %v, want 1", got)
	}
	m.Reload("applied")
	m.Reload("applied")
	m.Reload("rejected")
	for result, n := range map[string]float64{"applied": 2, "rejected": 1} {
		if got := find(t, m, "weft_config_reloads_total", map[string]string{"result": result}).GetCounter().GetValue(); got != n {
			t.Errorf("reloads %s = %v, want %v", result, got, n)
		}
	}
	m.SetVersion("v1")
	m.SetVersion("v2")
	f := family(t, m, "weft_config_info")
	if f == nil || len(f.GetMetric()) != 1 || labelsOf(f.GetMetric()[0])["version"] != "v2" || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("weft_config_info = %v, want only version v2 = 1", f)
	}
}

// TestRegistryHasRuntimeCollectors: the Go and process collectors are
// registered beside Weft's families.
func TestRegistryHasRuntimeCollectors(t *testing.T) {
	m := NewMetrics()
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if family(t, m, name) == nil {
			t.Errorf("no %s", name)
		}
	}
}

// TestHandlesAreCachedUntilForgotten: Route and Cluster resolve a label set
// once (a reload gets the same handles back), and ForgetCluster drops the
// cached ones with the series, so a re-added cluster counts into a series
// that is exported again, from zero.
func TestHandlesAreCachedUntilForgotten(t *testing.T) {
	m := NewMetrics()
	rs, cs := m.Route("out", "r", "c"), m.Cluster("c")
	if m.Route("out", "r", "c") != rs || m.Cluster("c") != cs {
		t.Fatal("a second lookup resolved new handles")
	}
	if m.Route("out", "r", "d") == rs {
		t.Fatal("another cluster's route got the same handles")
	}
	rs.Record(200, time.Millisecond)
	cs.Requests.Inc()
	labels := map[string]string{"listener": "out", "route": "r", "cluster": "c", "code_class": "2xx"}
	if got := find(t, m, "weft_requests_total", labels).GetCounter().GetValue(); got != 1 {
		t.Fatalf("requests: %v, want 1", got)
	}
	m.ForgetCluster("c")
	rs2, cs2 := m.Route("out", "r", "c"), m.Cluster("c")
	if rs2 == rs || cs2 == cs {
		t.Fatal("handles of a forgotten cluster were handed out again")
	}
	rs2.Record(200, time.Millisecond)
	cs2.Requests.Inc()
	if got := find(t, m, "weft_requests_total", labels).GetCounter().GetValue(); got != 1 {
		t.Fatalf("requests after the cluster came back: %v, want 1 (a new series)", got)
	}
	if got := find(t, m, "weft_upstream_requests_total", map[string]string{"cluster": "c"}).GetCounter().GetValue(); got != 1 {
		t.Fatalf("upstream requests after the cluster came back: %v, want 1", got)
	}
}
