package cluster

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/config"
)

// sendAll sends n requests picked by the cluster and reports each result,
// as the proxy does; it returns how many went to each address.
func sendAll(t *testing.T, c *Cluster, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		e := c.Pick(0, false, nil)
		if e == nil {
			t.Fatal("no endpoint")
		}
		st, err := get(e, "/")
		e.Report(st, err)
		got[e.Address()]++
	}
	return got
}

// returned reports whether e is back from its ejection in the view the
// cluster balances over (inView).
func returned(c *Cluster, e *Endpoint) bool { return !e.ejected.Load() && inView(c, e) }

// observed is a logger that keeps the cluster's log entries (Info and
// above) for the test to read: what was ejected, for how long, and what
// came back, whatever the timing of the checks.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return zap.New(core), logs
}

// logged returns the entries with message msg about endpoint addr.
func logged(logs *observer.ObservedLogs, msg, addr string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterMessage(msg).All() {
		if e.ContextMap()["endpoint"] == addr {
			out = append(out, e)
		}
	}
	return out
}

// expire ends e's ejection now, as its timer does when the ejection time
// is over, so a test can hold an ejection as long as its checks take and
// still see the return.
func expire(t *testing.T, c *Cluster, e *Endpoint) {
	t.Helper()
	c.mu.Lock()
	tm := e.ejectTimer
	c.mu.Unlock()
	if tm == nil || !tm.Stop() {
		t.Fatal("no ejection timer pending")
	}
	c.unEject(e)
}

func TestOutlierEjectsAfterConsecutive5xxAndReturns(t *testing.T) {
	var badCode, goodCode atomic.Int32
	badCode.Store(500)
	goodCode.Store(200)
	bad, good := statusServer(t, &badCode), statusServer(t, &goodCode)
	c := start(t, config.Cluster{Name: "od", Endpoints: static(bad, good), OutlierDetection: &config.OutlierDetection{
		Consecutive5xx: 3,
		Interval:       config.Duration(time.Hour),
		// Long enough that no check below can outlast it however loaded
		// the machine: expire ends it when the checks are done.
		BaseEjectionTime:   config.Duration(2 * time.Minute),
		MaxEjectionPercent: 50,
	}}, Options{})
	eb := endpointByAddr(c, bad)

	// Round robin alternates: bad gets its 3rd 500 on the 5th request.
	sendAll(t, c, 5)
	if !eb.ejected.Load() || c.Stats().Ejections.Load() != 1 {
		t.Fatalf("not ejected after 3 consecutive 500s (ejections %d)", c.Stats().Ejections.Load())
	}
	st := c.Status().Endpoints[0]
	if !st.Ejected || st.EjectedUntil.IsZero() || st.Failures != 3 {
		t.Fatalf("status %+v", st)
	}
	if got := sendAll(t, c, 20); got[bad] != 0 {
		t.Fatalf("ejected endpoint still gets traffic: %v", got)
	}
	expire(t, c, eb)
	if !returned(c, eb) {
		t.Fatal("not back in rotation when its ejection ended")
	}
	badCode.Store(200)
	if got := sendAll(t, c, 20); got[bad] != 10 {
		t.Fatalf("returned endpoint gets %v", got)
	}
}

func TestOutlierSuccessResetsCount(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	addr := statusServer(t, &code)
	c := start(t, config.Cluster{Name: "od", Endpoints: static(addr, "127.0.0.1:9"), OutlierDetection: &config.OutlierDetection{Consecutive5xx: 3}}, Options{})
	e := endpointByAddr(c, addr)
	for range 10 {
		e.Report(500, nil)
		e.Report(500, nil)
		e.Report(200, nil)
	}
	if e.ejected.Load() {
		t.Fatal("ejected though no 3 failures were consecutive")
	}
	e.Report(404, nil) // a 4xx is a success for the upstream
	e.Report(503, nil)
	e.Report(500, nil)
	e.Report(502, nil)
	if !e.ejected.Load() {
		t.Fatal("not ejected after 3 consecutive 5xx")
	}
}

func TestOutlierGatewayErrorsFromRealFailures(t *testing.T) {
	dead := closedAddr(t)
	var code atomic.Int32
	code.Store(200)
	good := statusServer(t, &code)
	c := start(t, config.Cluster{Name: "od", Endpoints: static(dead, good), OutlierDetection: &config.OutlierDetection{
		Consecutive5xx:           100,
		ConsecutiveGatewayErrors: 2,
		BaseEjectionTime:         config.Duration(time.Minute),
		MaxEjectionPercent:       50,
	}}, Options{})
	ed := endpointByAddr(c, dead)
	for i := range 2 {
		st, err := get(ed, "/")
		if Classify(err) != ConnectFailure {
			t.Fatalf("dial to a closed port: %d %v classified %v", st, err, Classify(err))
		}
		ed.Report(st, err)
		if ed.ejected.Load() != (i == 1) {
			t.Fatalf("after %d connect failures ejected=%v", i+1, ed.ejected.Load())
		}
	}
	// Overflow is not the endpoint's fault.
	eg := endpointByAddr(c, good)
	for range 5 {
		eg.Report(0, ErrOverflow)
	}
	if eg.ejected.Load() || eg.failures.Load() != 0 {
		t.Fatal("overflow counted against the endpoint")
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"}
	tests := []struct {
		percent float64
		want    int
	}{
		{10, 1}, // at least one may always be ejected
		{40, 2},
		{50, 2},
		{100, 4}, // never the last usable endpoint
	}
	for _, tt := range tests {
		c := start(t, config.Cluster{Name: "od", Endpoints: static(addrs...), OutlierDetection: &config.OutlierDetection{
			Consecutive5xx: 1, BaseEjectionTime: config.Duration(time.Minute), MaxEjectionPercent: tt.percent,
		}}, Options{})
		for _, e := range c.view.Load().set.endpoints {
			e.Report(503, nil)
		}
		n := 0
		for _, e := range c.Status().Endpoints {
			if e.Ejected {
				n++
			}
		}
		if n != tt.want || int(c.Stats().Ejections.Load()) != tt.want || int(c.Stats().EjectionsOverflow.Load()) != 5-tt.want {
			t.Errorf("max %g%%: %d ejected (stats %d, overflow %d), want %d", tt.percent, n,
				c.Stats().Ejections.Load(), c.Stats().EjectionsOverflow.Load(), tt.want)
		}
	}
}

func TestOutlierEjectionTimeGrows(t *testing.T) {
	base, maxT := 60*time.Millisecond, 150*time.Millisecond
	log, logs := observed()
	c := start(t, config.Cluster{Name: "od", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: &config.OutlierDetection{
		Consecutive5xx: 1, Interval: config.Duration(time.Hour), BaseEjectionTime: config.Duration(base),
		MaxEjectionTime: config.Duration(maxT), MaxEjectionPercent: 50,
	}}, Options{Logger: log})
	e := c.view.Load().set.endpoints[0]
	// Each ejection's length is read from its log entry, not from
	// Status().EjectedUntil: the ejection may be over before Status runs
	// on a loaded machine.
	for i, want := range []time.Duration{base, 2 * base, maxT, maxT} {
		e.Report(500, nil)
		ej := logged(logs, "endpoint ejected", e.Address())
		if len(ej) != i+1 {
			t.Fatalf("ejection %d: %d ejections logged", i+1, len(ej))
		}
		if d, n := ej[i].ContextMap()["for"], ej[i].ContextMap()["times"]; d != want || n != int64(i+1) {
			t.Fatalf("ejection %d lasts %v (times %v), want %v (times %d)", i+1, d, n, want, i+1)
		}
		eventually(t, "return", func() bool { return returned(c, e) })
	}
	if n := len(logged(logs, "endpoint returned from ejection", e.Address())); n != 4 {
		t.Fatalf("%d returns logged, want 4", n)
	}
	if got := c.Stats().Ejections.Load(); got != 4 {
		t.Fatalf("ejections %d", got)
	}
}

func TestOutlierMultiplierDecays(t *testing.T) {
	log, logs := observed()
	c := start(t, config.Cluster{Name: "od", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: &config.OutlierDetection{
		Consecutive5xx: 1, Interval: config.Duration(20 * time.Millisecond), BaseEjectionTime: config.Duration(30 * time.Millisecond),
		MaxEjectionPercent: 50,
	}}, Options{Logger: log})
	e := c.view.Load().set.endpoints[0]
	e.Report(500, nil)
	// The ejection happens inside Report; its counter never goes back, so
	// this holds however late the check runs (the ejection itself lasts
	// only 30ms). Without it the rest of the test passes on a multiplier
	// that was never raised.
	if n := c.Stats().Ejections.Load(); n != 1 {
		t.Fatalf("ejections = %d after one 500 with consecutive_5xx 1, want 1", n)
	}
	eventually(t, "return", func() bool { return returned(c, e) })
	// The endpoint really was out: only an endpoint marked ejected is
	// returned (and logged so) when its ejection time is over. Counting
	// alone, an ejection that never took the endpoint out passes.
	if n := len(logged(logs, "endpoint returned from ejection", e.Address())); n != 1 {
		t.Fatalf("%d returns from ejection logged, want 1: the endpoint was never taken out", n)
	}
	eventually(t, "multiplier back to 0 after clean intervals", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return e.timesEjected == 0
	})
}

// A cluster never ejects its last usable endpoint, whatever
// max_ejection_percent says: a lone endpoint that fails stays the one
// requests go to, rather than none.
func TestOutlierNeverEjectsTheLastUsableEndpoint(t *testing.T) {
	c := start(t, config.Cluster{Name: "od", Endpoints: static("127.0.0.1:1"), PanicThreshold: -1,
		OutlierDetection: &config.OutlierDetection{
			Consecutive5xx: 1, BaseEjectionTime: config.Duration(time.Minute), MaxEjectionPercent: 100,
		}}, Options{})
	e := c.view.Load().set.endpoints[0]
	for range 3 {
		e.Report(503, nil)
	}
	if e.ejected.Load() || c.Stats().Ejections.Load() != 0 || c.Stats().EjectionsOverflow.Load() != 3 {
		t.Fatalf("lone endpoint: ejected=%v ejections=%d refused=%d, want not ejected, 3 refused",
			e.ejected.Load(), c.Stats().Ejections.Load(), c.Stats().EjectionsOverflow.Load())
	}
	if c.Pick(0, false, nil) != e {
		t.Fatal("the lone failing endpoint is not picked")
	}
}

// Outlier detection is on when a cluster does not configure it, and
// outlier_detection: {disabled: true} turns it off.
func TestOutlierOnByDefault(t *testing.T) {
	for _, tt := range []struct {
		name  string
		od    *config.OutlierDetection
		eject bool
	}{
		{"default", nil, true},
		{"disabled", &config.OutlierDetection{Disabled: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Config{Clusters: []config.Cluster{{Name: "od", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: tt.od}}}
			cfg.ApplyDefaults()
			c := start(t, cfg.Clusters[0], Options{})
			e := c.view.Load().set.endpoints[0]
			for range 5 { // the default consecutive_5xx
				e.Report(0, &DialError{Addr: e.Address(), Err: syscall.ECONNREFUSED})
			}
			if e.ejected.Load() != tt.eject {
				t.Fatalf("after 5 connect failures ejected=%v, want %v", e.ejected.Load(), tt.eject)
			}
		})
	}
}

// TestOutlierSweepLowersOnlyCleanEndpoints drives the outlier interval's
// sweep by hand (the interval is an hour, so the loop never fires): an
// ejected endpoint keeps its multiplier, an endpoint that failed during
// the interval keeps it for that interval, a clean interval lowers it by
// one, and it never goes below zero.
func TestOutlierSweepLowersOnlyCleanEndpoints(t *testing.T) {
	c := start(t, config.Cluster{Name: "od", Endpoints: static("127.0.0.1:1", "127.0.0.1:2"), OutlierDetection: &config.OutlierDetection{
		Consecutive5xx: 2, Interval: config.Duration(time.Hour), BaseEjectionTime: config.Duration(time.Hour), MaxEjectionTime: config.Duration(2 * time.Hour),
		MaxEjectionPercent: 50,
	}}, Options{})
	e := c.view.Load().set.endpoints[0]
	times := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return e.timesEjected
	}
	e.Report(500, nil)
	e.Report(500, nil)
	if !e.ejected.Load() || times() != 1 {
		t.Fatalf("after two 500s: ejected=%v times=%d, want ejected once", e.ejected.Load(), times())
	}
	c.sweepOutliers() // not clean: the two 500s
	c.sweepOutliers() // clean, but ejected
	if times() != 1 {
		t.Fatalf("a sweep while ejected lowered the multiplier to %d", times())
	}
	c.unEject(e)
	if e.ejected.Load() {
		t.Fatal("not returned")
	}
	e.Report(500, nil) // one failure: not enough to eject, enough to spoil the interval
	if e.ejected.Load() {
		t.Fatal("ejected after one 500 with consecutive_5xx 2")
	}
	c.sweepOutliers()
	if times() != 1 {
		t.Fatalf("an interval with a failure lowered the multiplier to %d", times())
	}
	c.sweepOutliers()
	if times() != 0 {
		t.Fatalf("after a clean interval the multiplier is %d, want 0", times())
	}
	c.sweepOutliers()
	if times() != 0 {
		t.Fatalf("a clean interval at multiplier 0 made it %d", times())
	}
}
