package control_test

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
)

// TestPropagation measures how long a change made through the API takes to
// be applied by every sidecar (10 on loopback) while a bounded load runs
// through them, and checks that no request fails across 20 changes. The
// figures are logged (go test -run Propagation -v), not asserted.
func TestPropagation(t *testing.T) {
	const (
		sidecars = 10
		changes  = 20
		workers  = 4
		// maxRequests bounds the load whatever happens.
		maxRequests = 200000
	)
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	var ids []string
	for i := 0; i < sidecars; i++ {
		ids = append(ids, fmt.Sprintf("s%02d", i))
	}
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0, ids...)); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	var scs []*meshtest.Sidecar
	for _, id := range ids {
		scs = append(scs, meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: id, URL: cp.URL()}))
	}
	for _, s := range scs {
		waitBody(t, s, "200 a")
	}

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The load stops when the test ends, whatever the outcome, before the
	// sidecars' own cleanups (registered earlier) run.
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(stopLoad)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; sent.Load() < maxRequests; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				code, _, _, err := scs[i%sidecars].Get("orders", "/")
				if err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("sidecar %d: status %d, %v", i%sidecars, code, err))
				}
			}
		}()
	}

	var took, api []time.Duration
	for i := 0; i < changes; i++ {
		w1 := []int{0, 100}[i%2]
		t0 := time.Now()
		if code, out := putRule(t, cp.URL(), w1, 100-w1, 0); code != 200 {
			t.Fatalf("change %d: %d %s", i, code, out)
		}
		api = append(api, time.Since(t0))
		want := strconv.FormatInt(cp.Store().Revision(), 10)
		// Poll every 1ms (not Eventually's 10ms) so the figure is not
		// rounded up by the poll.
		deadline := time.Now().Add(15 * time.Second)
		for !allApplied(scs, want) {
			if time.Now().After(deadline) {
				t.Fatalf("change %d (version %s) not applied everywhere after 15s", i, want)
			}
			time.Sleep(time.Millisecond)
		}
		took = append(took, time.Since(t0))
	}
	stopLoad()

	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	sort.Slice(api, func(i, j int) bool { return api[i] < api[j] })
	t.Logf("propagation to %d sidecars over %d API changes under load (%d requests, %d failed): p50 %v, max %v, min %v (the API call alone: p50 %v, max %v)",
		sidecars, changes, sent.Load(), failed.Load(), took[len(took)/2], took[len(took)-1], took[0], api[len(api)/2], api[len(api)-1])
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during config changes; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if sent.Load() == 0 {
		t.Fatal("the load sent nothing")
	}
}

func allApplied(scs []*meshtest.Sidecar, version string) bool {
	for _, s := range scs {
		if s.Proxy.Version() != version {
			return false
		}
	}
	return true
}
