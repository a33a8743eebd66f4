package proxy

import (
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// wasmIsolationConfig has two listeners: "free" with no filter, and "spin"
// whose filter (the failure guest, every bound at its default) spins for
// ever on requests carrying x-loop.
const wasmIsolationConfig = `
filters:
  - name: spinner
    module: {path: "{{failure}}"}
listeners:
  - name: free
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
  - name: spin
    address: 127.0.0.1:0
    filters: [spinner]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// TestWasmRunawayIsolationFigures measures issue 18 §4: the throughput of
// a filter-free listener while a filter on another listener of the same
// sidecar spins on every request it gets, against the same with that
// filter working (the same clients, requests without x-loop), in
// alternating windows of one run. Clients,
// upstream and sidecar share this process and the machine's cores, as a
// sidecar shares a pod's. It takes a while: run it on demand,
//
//	WEFT_ISOLATION_FIGURES=3s go test -count=1 -run TestWasmRunawayIsolationFigures -v ./proxy/
//
// (3 s windows, five of each).
func TestWasmRunawayIsolationFigures(t *testing.T) {
	spec := os.Getenv("WEFT_ISOLATION_FIGURES")
	if spec == "" {
		t.Skip("set WEFT_ISOLATION_FIGURES=DURATION to measure")
	}
	window, err := time.ParseDuration(spec)
	if err != nil {
		t.Fatalf("WEFT_ISOLATION_FIGURES=%q: %v", spec, err)
	}
	up := testserver.Start(t, "up")
	p, freeURL := startProxy(t, wasmIsolationConfig, map[string]string{"up": up.Addr, "failure": guestFile(t, t.TempDir(), "failure")})
	spinURL := "http://" + p.ListenerAddr("spin").String() + "/"
	freeURL += "/"

	// The free listener's clients send as fast as they are answered; the
	// spinning listener gets a steady 4 × 50 requests a second either way.
	const freeClients, spinClients, spinEvery = 16, 4, 20 * time.Millisecond
	measure := func(spin bool) (rate float64, spun int64) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var n, spins atomic.Int64
		loop := func(url string, hdrs []string, count *atomic.Int64, every time.Duration) {
			defer wg.Done()
			c := &fasthttp.Client{}
			for {
				select {
				case <-stop:
					return
				case <-time.After(every):
				}
				st, _, _ := get(t, c, url, hdrs...)
				if st != 0 {
					count.Add(1)
				}
			}
		}
		for i := 0; i < freeClients; i++ {
			wg.Add(1)
			go loop(freeURL, nil, &n, 0)
		}
		var hdrs []string
		if spin {
			hdrs = []string{"X-Loop", "1"}
		}
		for i := 0; i < spinClients; i++ {
			wg.Add(1)
			go loop(spinURL, hdrs, &spins, spinEvery)
		}
		time.Sleep(window / 4) // warm up
		start, before := time.Now(), n.Load()
		time.Sleep(window)
		rate = float64(n.Load()-before) / time.Since(start).Seconds()
		close(stop)
		wg.Wait()
		return rate, spins.Load()
	}
	var ratios []float64
	for i := 0; i < 5; i++ {
		q, _ := measure(false)
		l, spun := measure(true)
		ratios = append(ratios, l/q)
		t.Logf("window %d: free listener %.0f req/s beside a working filter, %.0f req/s beside a spinning one (%.0f%%; %d requests to it)", i+1, q, l, 100*l/q, spun)
	}
	timeouts, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", "spinner", "event", "callback_timeout")
	slices.Sort(ratios)
	t.Logf("free listener throughput beside a spinning filter: median %.0f%% of beside a working one (min %.0f%%, max %.0f%%; %s)",
		100*ratios[len(ratios)/2], 100*ratios[0], 100*ratios[len(ratios)-1], strconv.Itoa(int(timeouts))+" callback timeouts")
}
