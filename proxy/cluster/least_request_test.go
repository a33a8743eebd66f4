package cluster

import (
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

func TestLeastRequestPrefersIdleEndpoint(t *testing.T) {
	release := make(chan struct{})
	slow := serve(t, func(ctx *fasthttp.RequestCtx) { <-release })
	fast1 := serve(t, func(ctx *fasthttp.RequestCtx) {})
	fast2 := serve(t, func(ctx *fasthttp.RequestCtx) {})
	c := start(t, config.Cluster{Name: "lr", LB: "least_request", Endpoints: static(slow, fast1, fast2)}, Options{})
	slowEp := endpointByAddr(c, slow)

	// Hold three requests on the slow endpoint.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := get(slowEp, "/"); err != nil || st != 200 {
				t.Errorf("slow request: %d %v", st, err)
			}
		}()
	}
	eventually(t, "3 requests active on the slow endpoint", func() bool { return slowEp.Active() == 3 })

	// With three endpoints and two distinct candidates per pick, the
	// busy one always loses its comparison.
	got := picks(c, 3000)
	if got[slow] != 0 {
		t.Errorf("busy endpoint picked %d times: %v", got[slow], got)
	}
	if got[fast1] < 1000 || got[fast2] < 1000 {
		t.Errorf("idle endpoints not shared: %v", got)
	}
	// Real traffic through Do: the fast endpoints answer, the slow one
	// stays busy, so it keeps receiving nothing.
	for range 200 {
		e := c.Pick(0, false, nil)
		if e == slowEp {
			t.Fatal("picked the busy endpoint during traffic")
		}
		if st, err := get(e, "/"); err != nil || st != 200 {
			t.Fatalf("fast request: %d %v", st, err)
		}
	}
	close(release)
	wg.Wait()
	if got := picks(c, 3000); got[slow] < 500 {
		t.Errorf("the idle-again endpoint gets %d of 3000 picks", got[slow])
	}
}

func BenchmarkPickLeastRequest(b *testing.B) {
	c := start(b, config.Cluster{Name: "lr", LB: "least_request", Endpoints: weighted(5, 1, 1, 3, 2, 8, 1, 1)}, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if c.Pick(0, false, nil) == nil {
			b.Fatal("nil")
		}
	}
}
