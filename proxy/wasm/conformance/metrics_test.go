package conformance_test

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestMetrics: the guest defines a counter, a gauge and a histogram
// (proxy_define_metric) in every VM of a pool of 2 and updates them from
// streams; Runtime.Collector exports them labelled by plugin with exact
// values, and proxy_get_metric reads the plugin-wide value.
func TestMetrics(t *testing.T) {
	t.Parallel()
	const sequential, concurrent = 20, 80
	name := unique("metrics")
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Name: name, Module: goGuest(t, "metrics"), PoolSize: 2}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	gaugeDelta := func(i int) int { return i%7 - 3 }
	size := func(i int) int { return i * 37 }
	var wantGauge, wantSum int
	for i := range sequential + concurrent {
		wantGauge += gaugeDelta(i)
		wantSum += size(i)
	}
	send := func(i int) (*result, error) {
		return px.do(request{Path: "/m", Header: [][2]string{
			{"X-Gauge-Delta", strconv.Itoa(gaugeDelta(i))},
			{"X-Size", strconv.Itoa(size(i))},
		}})
	}

	// Sequential streams: proxy_get_metric sees every earlier increment,
	// whichever VM made it.
	for i := range sequential {
		res, err := send(i)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != 200 || res.Upstream == nil {
			t.Fatalf("stream %d: status %d, body %q", i, res.Status, res.Body)
		}
		if got := res.Upstream.Get("x-counter-value"); got != strconv.Itoa(i+1) {
			t.Errorf("stream %d: proxy_get_metric(counter) = %s, want %d", i, got, i+1)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, concurrent)
	for i := sequential; i < sequential+concurrent; i++ {
		wg.Go(func() {
			res, err := send(i)
			if err == nil && (res.Status != 200 || res.Upstream == nil) {
				err = fmt.Errorf("stream %d: status %d", i, res.Status)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(runtime(t).Collector()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	find := func(metricName string) *dto.Metric {
		t.Helper()
		var found *dto.Metric
		for _, f := range families {
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["plugin"] == name && labels["name"] == metricName {
					if found != nil {
						t.Errorf("metric %q of plugin %s exported twice", metricName, name)
					}
					found = m
				}
			}
		}
		if found == nil {
			t.Fatalf("no exported metric %q for plugin %s", metricName, name)
		}
		return found
	}
	total := sequential + concurrent
	for _, n := range []string{"conformance_requests_total", "conformance.dotted.requests"} {
		if got := find(n).GetCounter().GetValue(); got != float64(total) {
			t.Errorf("counter %s = %v, want %d", n, got, total)
		}
	}
	if got := find("conformance_level").GetGauge().GetValue(); got != float64(wantGauge) {
		t.Errorf("gauge = %v, want %d", got, wantGauge)
	}
	h := find("conformance_size_bytes").GetHistogram()
	if h == nil {
		t.Fatal("conformance_size_bytes is not exported as a histogram")
	}
	if h.GetSampleCount() != uint64(total) {
		t.Errorf("histogram count = %d, want %d", h.GetSampleCount(), total)
	}
	if h.GetSampleSum() != float64(wantSum) {
		t.Errorf("histogram sum = %v, want %d", h.GetSampleSum(), wantSum)
	}
	// Buckets are cumulative, and each holds exactly the samples at or below
	// its bound, whatever bounds the host chose.
	for _, b := range h.GetBucket() {
		var want uint64
		for i := range total {
			if float64(size(i)) <= b.GetUpperBound() {
				want++
			}
		}
		if math.IsInf(b.GetUpperBound(), 1) {
			want = uint64(total)
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}
