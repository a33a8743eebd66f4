package cluster

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

func TestNewRefusesNonsense(t *testing.T) {
	ok := static("127.0.0.1:8080")
	tests := []struct {
		name string
		c    config.Cluster
		want string
	}{
		{"no name", config.Cluster{Endpoints: ok}, "name is empty"},
		{"nothing to send to", config.Cluster{Name: "a"}, "no endpoints and no dns"},
		{"both", config.Cluster{Name: "a", Endpoints: ok, DNS: &config.DNS{Name: "x", Port: 80}}, "not both"},
		{"bad address", config.Cluster{Name: "a", Endpoints: static("nohostport")}, `endpoint 0: address "nohostport"`},
		{"bad port", config.Cluster{Name: "a", Endpoints: static("h:99999")}, "port"},
		{"empty host", config.Cluster{Name: "a", Endpoints: static(":80")}, "has no host"},
		{"duplicate", config.Cluster{Name: "a", Endpoints: static("h:1", "h:1")}, "endpoint 1: address \"h:1\" repeats endpoint 0"},
		{"negative weight", config.Cluster{Name: "a", Endpoints: []config.Endpoint{{Address: "h:1", Weight: -1}}}, "weight -1"},
		{"unknown lb", config.Cluster{Name: "a", Endpoints: ok, LB: "fastest"}, `lb "fastest" is unknown`},
		{"hash_on without ring", config.Cluster{Name: "a", Endpoints: ok, HashOn: &config.HashOn{SourceIP: true}}, "only used by lb ring_hash"},
		{"hash_on two", config.Cluster{Name: "a", Endpoints: ok, LB: "ring_hash", HashOn: &config.HashOn{Header: "x", SourceIP: true}}, "exactly one"},
		{"hash_on none", config.Cluster{Name: "a", Endpoints: ok, LB: "ring_hash", HashOn: &config.HashOn{}}, "exactly one"},
		{"dns no name", config.Cluster{Name: "a", DNS: &config.DNS{Port: 80}}, "dns: name is empty"},
		{"dns port", config.Cluster{Name: "a", DNS: &config.DNS{Name: "x", Port: 0}}, "port 0"},
		{"panic over 100", config.Cluster{Name: "a", Endpoints: ok, PanicThreshold: 101}, "panic_threshold"},
		{"negative breaker", config.Cluster{Name: "a", Endpoints: ok, CircuitBreakers: config.CircuitBreakers{MaxPending: -1}}, "circuit_breakers.max_pending -1"},
		{"negative conns", config.Cluster{Name: "a", Endpoints: ok, MaxConnsPerEndpoint: -2}, "max_conns_per_endpoint"},
		{"hc path", config.Cluster{Name: "a", Endpoints: ok, HealthCheck: &config.HealthCheck{Path: "healthz"}}, "must start with /"},
		{"hc status", config.Cluster{Name: "a", Endpoints: ok, HealthCheck: &config.HealthCheck{ExpectedStatuses: []int{200, 42}}}, "expected_statuses[1]: 42"},
		{"hc threshold", config.Cluster{Name: "a", Endpoints: ok, HealthCheck: &config.HealthCheck{HealthyThreshold: -1}}, "thresholds"},
		{"od percent", config.Cluster{Name: "a", Endpoints: ok, OutlierDetection: &config.OutlierDetection{MaxEjectionPercent: 150}}, "max_ejection_percent 150"},
		{"od times", config.Cluster{Name: "a", Endpoints: ok, OutlierDetection: &config.OutlierDetection{
			BaseEjectionTime: config.Duration(time.Minute), MaxEjectionTime: config.Duration(time.Second)}}, "shorter than base_ejection_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.c, Options{})
			if err == nil {
				c.Close()
				t.Fatalf("New accepted %+v", tt.c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			if tt.c.Name != "" && !strings.Contains(err.Error(), `cluster "`+tt.c.Name+`"`) {
				t.Fatalf("error %q does not name the cluster", err)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	c, err := New(config.Cluster{Name: "d", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2", Weight: 3}},
		HealthCheck: &config.HealthCheck{}, OutlierDetection: &config.OutlierDetection{}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.s
	checks := []struct {
		name      string
		got, want any
	}{
		{"connect_timeout", s.ConnectTimeout, time.Second},
		{"idle_timeout", s.IdleTimeout, 60 * time.Second},
		{"max_conns_per_endpoint", s.MaxConnsPerEndpoint, 1024},
		{"panic_threshold", s.PanicThreshold, 50.0},
		{"max_connections", s.MaxConnections, int64(1024)},
		{"max_pending", s.MaxPending, int64(1024)},
		{"max_requests", s.MaxRequests, int64(1024)},
		{"max_retries", s.MaxRetries, int64(1024)},
		{"hc path", s.HealthCheck.Path, "/healthz"},
		{"hc interval", s.HealthCheck.Interval, 5 * time.Second},
		{"hc timeout", s.HealthCheck.Timeout, time.Second},
		{"hc healthy", s.HealthCheck.HealthyThreshold, 2},
		{"hc unhealthy", s.HealthCheck.UnhealthyThreshold, 3},
		{"hc 399 ok", s.HealthCheck.expected(399), true},
		{"hc 404 not ok", s.HealthCheck.expected(404), false},
		{"od 5xx", s.Outlier.Consecutive5xx, int32(5)},
		{"od gateway off", s.Outlier.ConsecutiveGatewayErrors, int32(0)},
		{"od interval", s.Outlier.Interval, 10 * time.Second},
		{"od base", s.Outlier.BaseEjectionTime, 30 * time.Second},
		{"od max", s.Outlier.MaxEjectionTime, 300 * time.Second},
		{"od percent", s.Outlier.MaxEjectionPercent, 10.0},
		{"lb", c.Status().LB, "round_robin"},
		{"weight", c.Status().Endpoints[0].Weight, 1},
		{"weight kept", c.Status().Endpoints[1].Weight, 3},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	c2, err := New(config.Cluster{Name: "p", Endpoints: static("h:1"), PanicThreshold: -1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c2.s.PanicThreshold != 0 {
		t.Errorf("panic_threshold -1 gives %v, want disabled (0)", c2.s.PanicThreshold)
	}
}

func TestKeyDigestsNormalizedConfig(t *testing.T) {
	base := config.Cluster{Name: "k", Endpoints: static("127.0.0.1:1", "127.0.0.1:2")}
	explicit := base
	explicit.Endpoints = []config.Endpoint{{Address: "127.0.0.1:1", Weight: 1}, {Address: "127.0.0.1:2", Weight: 1}}
	explicit.LB = "round_robin"
	explicit.ConnectTimeout = config.Duration(time.Second)
	changed := base
	changed.Endpoints = []config.Endpoint{{Address: "127.0.0.1:1", Weight: 2}, {Address: "127.0.0.1:2"}}
	otherLB := base
	otherLB.LB = "random"

	key := func(c config.Cluster) string {
		cl, err := New(c, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		return cl.Key()
	}
	k := key(base)
	if k == "" || key(base) != k {
		t.Fatalf("key not stable: %q", k)
	}
	if key(explicit) != k {
		t.Error("explicit defaults changed the key")
	}
	if key(changed) == k {
		t.Error("a weight change kept the key")
	}
	if key(otherLB) == k {
		t.Error("an lb change kept the key")
	}
}

func TestStartCloseAreIdempotent(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	addr := statusServer(t, &code)
	c, err := New(config.Cluster{Name: "s", Endpoints: static(addr),
		IdleTimeout:      config.Duration(100 * time.Millisecond),
		HealthCheck:      &config.HealthCheck{Interval: config.Duration(20 * time.Millisecond)},
		OutlierDetection: &config.OutlierDetection{Interval: config.Duration(20 * time.Millisecond)}},
		Options{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	c.Start()
	if st, err := get(c.Pick(0, false, nil), "/"); err != nil || st != 200 {
		t.Fatalf("get: %d %v", st, err)
	}
	c.Close()
	c.Close()
	c.Start() // after Close: nothing starts
	// Do after Close still works but keeps no connection.
	if st, err := get(c.Pick(0, false, nil), "/"); err != nil || st != 200 {
		t.Fatalf("get after close: %d %v", st, err)
	}
	eventually(t, "connections closed after Close", func() bool { return c.Status().Connections == 0 })
}

func TestPickEmptyAndSingle(t *testing.T) {
	c := start(t, config.Cluster{Name: "one", Endpoints: static("127.0.0.1:9")}, Options{})
	for _, ex := range []*Endpoint{nil, c.Pick(0, false, nil)} {
		if e := c.Pick(0, false, ex); e == nil || e.Address() != "127.0.0.1:9" {
			t.Fatalf("single endpoint: got %v", e)
		}
	}
}
