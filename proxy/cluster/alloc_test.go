package cluster

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// TestDataPathDoesNotAllocate proves the per-request calls allocate
// nothing in steady state.
func TestDataPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	eps := weighted(5, 1, 1, 3, 2, 8, 1, 1)
	src := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5555}
	var req fasthttp.Request
	req.Header.Set("X-User", "user-42")
	req.Header.Set("Cookie", "a=b; session=abc123")
	wrapped := fmt.Errorf("cluster %q: %w", "x", &DialError{Addr: "a", Err: net.ErrClosed})

	for _, lb := range []string{"round_robin", "least_request", "random", "ring_hash"} {
		for _, mode := range []string{"normal", "unusable", "panic"} {
			t.Run(lb+"/"+mode, func(t *testing.T) {
				c := start(t, config.Cluster{Name: "a", LB: lb, Endpoints: eps}, Options{})
				all := c.view.Load().set.endpoints
				switch mode {
				case "unusable":
					all[0].ejected.Store(true)
					all[5].unhealthy.Store(true)
				case "panic":
					for _, e := range all[1:] {
						e.unhealthy.Store(true)
					}
				}
				c.rebuild()
				ex := all[3]
				k := uint64(0)
				allocs := testing.AllocsPerRun(1000, func() {
					k += 0x9e3779b97f4a7c15
					if c.Pick(k, true, nil) == nil || c.Pick(k, false, nil) == nil || c.Pick(k, true, ex) == nil {
						t.Fatal("nil pick")
					}
				})
				if allocs != 0 {
					t.Fatalf("Pick allocates %v times", allocs)
				}
				var tried [2]*Endpoint
				allocs = testing.AllocsPerRun(1000, func() {
					k += 0x9e3779b97f4a7c15
					tried[0] = c.Pick(k, true, nil)
					tried[1] = c.PickUntried(k, true, tried[:1])
					if c.PickUntried(k, true, tried[:]) == nil {
						t.Fatal("nil pick")
					}
				})
				if allocs != 0 {
					t.Fatalf("PickUntried allocates %v times", allocs)
				}
			})
		}
	}
	for _, h := range []config.HashOn{{Header: "x-user"}, {Cookie: "session"}, {SourceIP: true}} {
		t.Run(fmt.Sprintf("HashKey %+v", h), func(t *testing.T) {
			c := start(t, config.Cluster{Name: "h", LB: "ring_hash", Endpoints: eps, HashOn: &h}, Options{})
			allocs := testing.AllocsPerRun(1000, func() {
				if _, ok := c.HashKey(&req, src); !ok {
					t.Fatal("no key")
				}
			})
			if allocs != 0 {
				t.Fatalf("HashKey allocates %v times", allocs)
			}
		})
	}
	t.Run("breakers, Report, Classify", func(t *testing.T) {
		c := start(t, config.Cluster{Name: "b", Endpoints: eps, OutlierDetection: &config.OutlierDetection{Consecutive5xx: 1 << 30}}, Options{})
		e := c.Pick(0, false, nil)
		allocs := testing.AllocsPerRun(1000, func() {
			if c.AcquireRequest() {
				c.ReleaseRequest()
			}
			if c.AcquireRetry() {
				c.ReleaseRetry()
			}
			e.Report(200, nil)
			e.Report(503, nil)
			e.Report(0, wrapped)
			if Classify(wrapped) != ConnectFailure {
				t.Fatal("classify")
			}
		})
		if allocs != 0 {
			t.Fatalf("allocates %v times", allocs)
		}
	})
	t.Run("Do", func(t *testing.T) {
		addr := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
		c := start(t, config.Cluster{Name: "d", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("/")
		req.Header.SetHost("svc")
		deadline := time.Now().Add(10 * time.Second)
		// Allocations are counted process-wide, so this includes the
		// upstream server's; both sides are fasthttp and allocate nothing
		// per request once warm.
		allocs := testing.AllocsPerRun(200, func() {
			if err := e.Do(req, resp, deadline); err != nil {
				t.Fatal(err)
			}
		})
		if allocs >= 1 {
			t.Fatalf("Do allocates %v times per request", allocs)
		}
	})
}

func BenchmarkDo(b *testing.B) {
	addr := serve(b, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	c := start(b, config.Cluster{Name: "d", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("/")
		req.Header.SetHost("svc")
		for pb.Next() {
			if err := e.Do(req, resp, time.Now().Add(10*time.Second)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkReport(b *testing.B) {
	c := start(b, config.Cluster{Name: "b", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"),
		OutlierDetection: &config.OutlierDetection{}}, Options{})
	e := c.Pick(0, false, nil)
	b.ReportAllocs()
	for b.Loop() {
		e.Report(200, nil)
	}
}
