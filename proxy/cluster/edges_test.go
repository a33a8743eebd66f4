package cluster

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// TestDialFailureFreesConnectionSlot: a refused connection gives its
// max_connections slot back, so with max_connections 1 a live endpoint is
// still reachable after a dead one refused a connection.
func TestDialFailureFreesConnectionSlot(t *testing.T) {
	dead := closedAddr(t)
	live := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) })
	c := start(t, config.Cluster{Name: "mc", Endpoints: static(dead, live), PanicThreshold: -1,
		OutlierDetection: &config.OutlierDetection{Disabled: true},
		CircuitBreakers:  config.CircuitBreakers{MaxConnections: 1}}, Options{})
	if _, err := get(endpointByAddr(c, dead), "/"); Classify(err) != ConnectFailure {
		t.Fatalf("dead endpoint: %v, want a connect failure", err)
	}
	if n := c.breakers.connections.Load(); n != 0 {
		t.Fatalf("%d connections counted after a refused dial, want 0", n)
	}
	if st, err := get(endpointByAddr(c, live), "/"); err != nil || st != 200 {
		t.Fatalf("live endpoint after a refused dial: %d %v, want 200 (max_connections 1 is free again)", st, err)
	}
	if n := c.Stats().RejectedConnections.Load(); n != 0 {
		t.Fatalf("%d connections rejected by max_connections, want 0", n)
	}
}

// TestDialTimeoutBound: a dial with less time left than its bound
// (connect_timeout, or a health check's timeout) gets that time; one with
// none, or more, gets the bound.
func TestDialTimeoutBound(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 2 * time.Second},
		{-time.Second, 2 * time.Second},
		{time.Nanosecond, time.Nanosecond},
		{time.Second, time.Second},
		{2 * time.Second, 2 * time.Second},
		{3 * time.Second, 2 * time.Second},
	} {
		if got := dialTimeout(tc.in, 2*time.Second); got != tc.want {
			t.Errorf("dialTimeout(%s, 2s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestClassifyDepthBound: Classify follows a wrap chain 16 links deep and
// no deeper (a cyclic chain cannot hold it).
func TestClassifyDepthBound(t *testing.T) {
	wrap := func(n int) error {
		var err error = &DialError{Addr: "a", Err: syscall.ECONNREFUSED}
		for range n {
			err = fmt.Errorf("w: %w", err)
		}
		return err
	}
	if k := Classify(wrap(15)); k != ConnectFailure {
		t.Fatalf("dial error under 15 wraps: %v, want ConnectFailure", k)
	}
	if k := Classify(wrap(16)); k != Other {
		t.Fatalf("dial error under 16 wraps: %v, want Other (past the depth bound)", k)
	}
	if k := Classify(cyclic{}); k != Other {
		t.Fatalf("cyclic chain: %v, want Other", k)
	}
}

// cyclic unwraps to itself forever.
type cyclic struct{}

func (cyclic) Error() string { return "cyclic" }
func (cyclic) Unwrap() error { return cyclic{} }

// TestHashKeySourceIPForms: an IPv4 source hashes the same in its 4- and
// 16-byte forms (a v4-mapped address is the same client), and an IPv6
// source has a key of its own.
func TestHashKeySourceIPForms(t *testing.T) {
	c := start(t, config.Cluster{Name: "h", LB: "ring_hash", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), HashOn: &config.HashOn{SourceIP: true}}, Options{})
	var req fasthttp.Request
	v4, ok4 := c.HashKey(&req, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3).To4(), Port: 1})
	v4in16, ok16 := c.HashKey(&req, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 2})
	if !ok4 || !ok16 || v4 != v4in16 {
		t.Fatalf("10.1.2.3 as 4 bytes %x (%v), as 16 bytes %x (%v): want one key", v4, ok4, v4in16, ok16)
	}
	if v4 != hash64([]byte{10, 1, 2, 3}) {
		t.Fatal("an IPv4 source is not keyed on its 4 bytes")
	}
	v6, ok6 := c.HashKey(&req, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1})
	if !ok6 || v6 != hash64(net.ParseIP("2001:db8::1")) {
		t.Fatalf("IPv6 source: key %x ok %v, want the hash of its 16 bytes", v6, ok6)
	}
}

// TestHealthCheckExpectedStatusBounds: expected_statuses take 100..599;
// an empty list means the default 200-399, not "nothing is healthy".
func TestHealthCheckExpectedStatusBounds(t *testing.T) {
	for _, st := range []int{100, 599} {
		if _, err := compileHealthCheck(config.HealthCheck{ExpectedStatuses: []int{st}}); err != nil {
			t.Errorf("expected status %d refused: %v", st, err)
		}
	}
	for _, st := range []int{99, 600} {
		if _, err := compileHealthCheck(config.HealthCheck{ExpectedStatuses: []int{200, st}}); err == nil || !strings.Contains(err.Error(), "expected_statuses[1]") {
			t.Errorf("expected status %d: %v, want refused naming expected_statuses[1]", st, err)
		}
	}
	h, err := compileHealthCheck(config.HealthCheck{ExpectedStatuses: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	if !h.expected(200) || !h.expected(399) || h.expected(400) || h.expected(199) {
		t.Fatal("an empty expected_statuses is not the default 200-399")
	}
}

// TestReplayable: a request that broke on a stale pooled connection is
// sent again only for an idempotent method (TRACE included, POST, PATCH
// and CONNECT not) and never when its body streams from the client.
func TestReplayable(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH", "CONNECT", "QUERY"} {
		var req fasthttp.Request
		req.Header.SetMethod(m)
		want := m != "POST" && m != "PATCH" && m != "CONNECT" && m != "QUERY"
		if got := replayable(&req, false); got != want {
			t.Errorf("%s: replayable %v, want %v", m, got, want)
		}
		if replayable(&req, true) {
			t.Errorf("%s with a streamed body: replayable", m)
		}
	}
}

// TestCheckRunThresholds: an unhealthy endpoint comes back after exactly
// healthy_threshold passed checks in a row, a healthy one goes after
// exactly unhealthy_threshold failed ones; a check of the other kind
// restarts the count.
func TestCheckRunThresholds(t *testing.T) {
	h := &healthSettings{HealthyThreshold: 2, UnhealthyThreshold: 3}
	var r checkRun
	steps := []struct {
		passed, unhealthy, flip bool
	}{
		{false, false, false}, {false, false, false}, {true, false, false}, // a pass restarts the failures
		{false, false, false}, {false, false, false}, {false, false, true}, // the third failure in a row
		{true, true, false}, {false, true, false}, // a failure restarts the passes
		{true, true, false}, {true, true, true}, // the second pass in a row
		{true, false, false}, {true, false, false}, // passes while healthy flip nothing
	}
	for i, s := range steps {
		if got := r.record(h, s.passed, s.unhealthy); got != s.flip {
			t.Fatalf("step %d (passed %v, unhealthy %v): flip %v, want %v (run %+v)", i, s.passed, s.unhealthy, got, s.flip, r)
		}
	}
	// Failures while unhealthy flip nothing either.
	for i := range 5 {
		if r.record(h, false, true) {
			t.Fatalf("failure %d while unhealthy flipped the endpoint", i)
		}
	}
}

// TestHealthCheckJitter: the jitter is at most a tenth of the interval,
// and an interval under ten nanoseconds has none.
func TestHealthCheckJitter(t *testing.T) {
	for range 200 {
		if j := jitter(5 * time.Second); j < 0 || j > 500*time.Millisecond {
			t.Fatalf("jitter(5s) = %s, want 0..500ms", j)
		}
		if j := jitter(9); j != 0 {
			t.Fatalf("jitter(9ns) = %s, want 0", j)
		}
		if d := nextCheck(5 * time.Second); d < 5*time.Second || d > 5500*time.Millisecond {
			t.Fatalf("nextCheck(5s) = %s, want 5s..5.5s", d)
		}
	}
}

// TestLeastRequestComparesLoadPerWeight: of two candidates the one with
// fewer active requests per unit of weight wins, whichever is drawn
// first; with an endpoint excluded (a retry) the other two are still
// compared.
func TestLeastRequestComparesLoadPerWeight(t *testing.T) {
	c := start(t, config.Cluster{Name: "lr", LB: "least_request", Endpoints: weighted(2, 4)}, Options{})
	w2, w4 := endpointByAddr(c, "127.0.0.1:1"), endpointByAddr(c, "127.0.0.1:2")
	w2.active.Add(3) // 1.5 a unit of weight
	w4.active.Add(4) // 1 a unit
	t.Cleanup(func() { w2.active.Add(-3); w4.active.Add(-4) })
	if got := picks(c, 500); got[w4.addr] != 500 {
		t.Fatalf("picks %v, want every one on the weight-4 endpoint (less loaded per unit of weight)", got)
	}

	c3 := start(t, config.Cluster{Name: "lr3", LB: "least_request", Endpoints: weighted(1, 1, 1)}, Options{})
	a, b, x := endpointByAddr(c3, "127.0.0.1:1"), endpointByAddr(c3, "127.0.0.1:2"), endpointByAddr(c3, "127.0.0.1:3")
	b.active.Add(2)
	t.Cleanup(func() { b.active.Add(-2) })
	for range 500 {
		if e := c3.Pick(0, false, x); e != a {
			t.Fatalf("picked %s with %s excluded, want the idle %s", e.addr, x.addr, a.addr)
		}
	}
}

// TestOutlierGatewayStatuses: 502, 503 and 504 count as gateway errors
// (consecutive_gateway_errors ejects after them), other 5xx do not.
func TestOutlierGatewayStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		eject  bool
	}{{500, false}, {501, false}, {502, true}, {503, true}, {504, true}, {505, false}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			c := start(t, config.Cluster{Name: "gw", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: &config.OutlierDetection{
				Consecutive5xx: 100, ConsecutiveGatewayErrors: 2, Interval: config.Duration(time.Hour),
				BaseEjectionTime: config.Duration(time.Hour), MaxEjectionTime: config.Duration(time.Hour), MaxEjectionPercent: 50,
			}}, Options{})
			e := c.view.Load().set.endpoints[0]
			e.Report(tc.status, nil)
			e.Report(tc.status, nil)
			if e.ejected.Load() != tc.eject {
				t.Fatalf("two %d answers: ejected %v, want %v", tc.status, e.ejected.Load(), tc.eject)
			}
		})
	}
}

// TestOutlierEjectionTimeBounds: max_ejection_time may equal
// base_ejection_time, not be shorter.
func TestOutlierEjectionTimeBounds(t *testing.T) {
	if _, err := compileOutlier(config.OutlierDetection{BaseEjectionTime: config.Duration(time.Minute), MaxEjectionTime: config.Duration(time.Minute)}); err != nil {
		t.Fatalf("equal base and max ejection times refused: %v", err)
	}
	if _, err := compileOutlier(config.OutlierDetection{BaseEjectionTime: config.Duration(time.Minute), MaxEjectionTime: config.Duration(time.Minute - 1)}); err == nil {
		t.Fatal("a max ejection time under the base accepted")
	}
}

// TestNewLimits: an endpoint weight of maxWeight and ports (an
// endpoint's, DNS's) of 1 or 65535 are accepted, one past them refused.
func TestNewLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    config.Cluster
		ok   bool
	}{
		{"weight max", config.Cluster{Endpoints: []config.Endpoint{{Address: "127.0.0.1:1", Weight: maxWeight}}}, true},
		{"weight over max", config.Cluster{Endpoints: []config.Endpoint{{Address: "127.0.0.1:1", Weight: maxWeight + 1}}}, false},
		{"endpoint port 1", config.Cluster{Endpoints: static("127.0.0.1:1")}, true},
		{"endpoint port 65535", config.Cluster{Endpoints: static("127.0.0.1:65535")}, true},
		{"endpoint port 0", config.Cluster{Endpoints: static("127.0.0.1:0")}, false},
		{"endpoint port 65536", config.Cluster{Endpoints: static("127.0.0.1:65536")}, false},
		{"dns port 1", config.Cluster{DNS: &config.DNS{Name: "localhost", Port: 1}}, true},
		{"dns port 65535", config.Cluster{DNS: &config.DNS{Name: "localhost", Port: 65535}}, true},
		{"dns port 0", config.Cluster{DNS: &config.DNS{Name: "localhost", Port: 0}}, false},
		{"dns port 65536", config.Cluster{DNS: &config.DNS{Name: "localhost", Port: 65536}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Name = "lim"
			cl, err := New(tc.c, Options{Logger: logger(t)})
			if err == nil {
				cl.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want accepted %v", err, tc.ok)
			}
		})
	}
}

// TestOutlierSuccessEndsGatewayRun: a success between two gateway errors
// starts the count again, as a plain 500 does.
func TestOutlierSuccessEndsGatewayRun(t *testing.T) {
	for _, between := range []int{200, 500} {
		t.Run(fmt.Sprint(between), func(t *testing.T) {
			c := start(t, config.Cluster{Name: "gw", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: &config.OutlierDetection{
				Consecutive5xx: 100, ConsecutiveGatewayErrors: 2, Interval: config.Duration(time.Hour),
				BaseEjectionTime: config.Duration(time.Hour), MaxEjectionTime: config.Duration(time.Hour), MaxEjectionPercent: 50,
			}}, Options{})
			e := c.view.Load().set.endpoints[0]
			e.Report(502, nil)
			e.Report(between, nil)
			e.Report(502, nil)
			if e.ejected.Load() {
				t.Fatalf("502, %d, 502 ejected with consecutive_gateway_errors 2", between)
			}
			e.Report(502, nil)
			if !e.ejected.Load() {
				t.Fatal("two 502 in a row did not eject")
			}
		})
	}
}

// TestOutlierGatewayErrorsOff: with consecutive_gateway_errors unset (0)
// gateway errors eject only through consecutive_5xx.
func TestOutlierGatewayErrorsOff(t *testing.T) {
	c := start(t, config.Cluster{Name: "gw", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: &config.OutlierDetection{
		Consecutive5xx: 3, Interval: config.Duration(time.Hour),
		BaseEjectionTime: config.Duration(time.Hour), MaxEjectionTime: config.Duration(time.Hour), MaxEjectionPercent: 50,
	}}, Options{})
	e := c.view.Load().set.endpoints[0]
	e.Report(502, nil)
	e.Report(503, nil)
	if e.ejected.Load() {
		t.Fatal("two gateway errors ejected with consecutive_gateway_errors off and consecutive_5xx 3")
	}
	e.Report(504, nil)
	if !e.ejected.Load() {
		t.Fatal("three 5xx in a row did not eject")
	}
}
