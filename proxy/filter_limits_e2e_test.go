package proxy

import (
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// A filter cannot exceed the listener's limits: a Wasm filter that adds
// 2,000 headers of 60 KB (120 MB) has its writes refused past the
// listener's 64 KiB of headers, and fails by its policy (counted):
// fail_closed answers 503 without calling the upstream, fail_open lets the
// request go with what fit. Either way the sidecar allocates a few MB for
// the request, not the 120 MB the filter asked for.
func TestWasmFilterHeldToListenerLimits(t *testing.T) {
	module := guestFile(t, t.TempDir(), "bigheaders")
	var calls, bigSeen atomic.Int32
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		calls.Add(1)
		n := 0
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-big-") {
				n++
			}
		}
		bigSeen.Store(int32(n))
		return 200, "ok"
	})
	for _, policy := range []string{"fail_closed", "fail_open"} {
		t.Run(policy, func(t *testing.T) {
			// A long deadline: the guest builds 2,000 headers of 60 KB, more
			// work than the default 50 ms allows on a loaded machine (and
			// more than 1 s under -race on two busy cores, where a timeout
			// was counted instead of over_limits); this test is about the
			// limits, not the deadline.
			cfg := "filters:\n  - name: big\n    module: {path: " + module + "}\n    failure_policy: " + policy + "\n    callback_timeout: 30s\n" + uploadConfig
			p, url := startProxy(t, cfg, uploadVars(addr, "filters", "big"))
			c := &fasthttp.Client{}
			get(t, c, url+"/warm") // the VM is started and warm before measuring
			calls.Store(0)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			status, _, _ := get(t, c, url+"/")
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			switch policy {
			case "fail_closed":
				if status != 503 || calls.Load() != 0 {
					t.Fatalf("status %d, upstream calls %d", status, calls.Load())
				}
			case "fail_open":
				if status != 200 || bigSeen.Load() > 1 {
					t.Fatalf("status %d, the upstream saw %d big headers", status, bigSeen.Load())
				}
			}
			if n, ok := metricValue(t, p, "weft_wasm_events_total", "plugin", "big", "event", "over_limits"); !ok || n < 2 {
				timeouts, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", "big", "event", "callback_timeout")
				t.Fatalf("over_limits counted %v (%t), want 2 (timeouts: %v)", n, ok, timeouts)
			}
			if alloc > 32<<20 {
				t.Fatalf("the request allocated %d MiB", alloc>>20)
			}
			t.Logf("%s: %d, %.1f MiB allocated for the request", policy, status, float64(alloc)/(1<<20))
		})
	}
}
