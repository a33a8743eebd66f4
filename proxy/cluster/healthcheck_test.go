package cluster

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// checkedServer is a real upstream whose /healthz answers the status held
// in code (other paths 200), and which records the Host of health checks.
type checkedServer struct {
	addr   string
	code   atomic.Int32
	checks atomic.Int32
	mu     sync.Mutex
	hosts  map[string]bool
}

func newCheckedServer(t *testing.T) *checkedServer {
	s := &checkedServer{hosts: map[string]bool{}}
	s.code.Store(200)
	s.addr = serve(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/healthz" {
			return
		}
		s.checks.Add(1)
		s.mu.Lock()
		s.hosts[string(ctx.Host())] = true
		s.mu.Unlock()
		ctx.SetStatusCode(int(s.code.Load()))
	})
	return s
}

func fastChecks() *config.HealthCheck {
	return &config.HealthCheck{
		Interval:           config.Duration(20 * time.Millisecond),
		Timeout:            config.Duration(500 * time.Millisecond),
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
		Host:               "health.weft.test",
	}
}

func TestHealthCheckMarksUnhealthyAndBack(t *testing.T) {
	a, b := newCheckedServer(t), newCheckedServer(t)
	c := start(t, config.Cluster{Name: "hc", Endpoints: static(a.addr, b.addr), HealthCheck: fastChecks(), PanicThreshold: -1}, Options{})
	ea := endpointByAddr(c, a.addr)

	eventually(t, "checks running", func() bool { return a.checks.Load() >= 2 && b.checks.Load() >= 2 })
	if !c.Status().Endpoints[0].Healthy {
		t.Fatal("a healthy endpoint is marked unhealthy")
	}
	a.code.Store(503)
	eventually(t, "a unhealthy", func() bool { return !c.Status().Endpoints[0].Healthy && !inView(c, ea) })
	if got := picks(c, 100); got[a.addr] != 0 || got[b.addr] != 100 {
		t.Fatalf("traffic while a is unhealthy: %v", got)
	}
	if c.Stats().HealthCheckFailures.Load() < 2 {
		t.Fatalf("health check failures counted: %d", c.Stats().HealthCheckFailures.Load())
	}
	a.code.Store(204)
	eventually(t, "a healthy again", func() bool { return !ea.unhealthy.Load() && inView(c, ea) })
	if got := picks(c, 100); got[a.addr] != 50 || got[b.addr] != 50 {
		t.Fatalf("traffic after a recovered: %v", got)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.hosts) != 1 || !a.hosts["health.weft.test"] {
		t.Fatalf("health checks sent Host %v", a.hosts)
	}
}

func TestHealthCheckExpectedStatusesAndDeadEndpoint(t *testing.T) {
	a := newCheckedServer(t)
	a.code.Store(418)
	dead := closedAddr(t)
	hc := fastChecks()
	hc.ExpectedStatuses = []int{418}
	c := start(t, config.Cluster{Name: "hc", Endpoints: static(a.addr, dead), HealthCheck: hc, PanicThreshold: -1}, Options{})
	eventually(t, "dead endpoint unhealthy", func() bool {
		return !c.Status().Endpoints[1].Healthy && !inView(c, endpointByAddr(c, dead))
	})
	if !c.Status().Endpoints[0].Healthy {
		t.Fatal("418 is expected but marked a unhealthy")
	}
	if got := picks(c, 50); got[a.addr] != 50 {
		t.Fatalf("picks %v", got)
	}
}

func TestPanicThreshold(t *testing.T) {
	var servers []*checkedServer
	var addrs []string
	for range 4 {
		s := newCheckedServer(t)
		servers = append(servers, s)
		addrs = append(addrs, s.addr)
	}
	for _, s := range servers[1:] {
		s.code.Store(500)
	}
	tests := []struct {
		name      string
		threshold float64
		// wantAll: traffic to all four (panic); else only to the healthy one.
		wantAll bool
	}{
		{"default 50: 25% healthy panics", 0, true},
		{"threshold 20: 25% healthy is enough", 20, false},
		{"disabled", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t, config.Cluster{Name: "p", Endpoints: static(addrs...), HealthCheck: fastChecks(), PanicThreshold: tt.threshold}, Options{})
			eventually(t, "three unhealthy", func() bool {
				n := 0
				for _, e := range c.Status().Endpoints {
					if !e.Healthy {
						n++
					}
				}
				return n == 3
			})
			got := picks(c, 400)
			if tt.wantAll {
				if !c.Status().Panic {
					t.Error("Status does not report panic")
				}
				for _, a := range addrs {
					if got[a] != 100 {
						t.Fatalf("panic mode should spread over all: %v", got)
					}
				}
			} else if got[addrs[0]] != 400 || c.Status().Panic {
				t.Fatalf("want all traffic on the healthy endpoint: %v", got)
			}
		})
	}
}

func TestPanicWhenNothingUsable(t *testing.T) {
	c := start(t, config.Cluster{Name: "p", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), PanicThreshold: -1}, Options{})
	for _, e := range c.view.Load().set.endpoints {
		e.unhealthy.Store(true)
	}
	c.rebuild()
	if e := c.Pick(0, false, nil); e != nil {
		t.Fatalf("no usable endpoint and no panic mode, got %s", e.Address())
	}
}
