package bench

import (
	"context"
	"testing"
	"time"

	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/report"
)

// weft-kill-endpoint kills one of its two upstream processes during the
// measured window; with the defaults, at most KillMaxFailShare of the
// requests fail, and the report places the kill in the window. Its check
// fails a run that lost more.
func TestKillEndpointScenario(t *testing.T) {
	weft := weftForTest(t)
	var log pidLog
	const conns = killInFlight
	scs := []Scenario{WeftKillEndpoint(), WeftKillEndpointH2C()}
	opts := quickOptions(t, &log, scs...)
	opts.WeftBin = weft
	opts.Load.Connections = conns
	opts.Load.Duration = time.Second
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Scenarios {
		if !s.OK() || s.Fault == nil {
			t.Fatalf("%s: %+v", s.Name, s)
		}
		if at := float64(s.Fault.At); at < KillAt*0.9 || at > 1 {
			t.Fatalf("%s: the kill happened %.3fs into the 1s window, want about %.1fs", s.Name, at, KillAt)
		}
		t.Logf("%s: %d requests, %d failed; recovery %v", s.Name, s.Requests, s.Failed(), s.Fault.Recovery)
	}
	log.assertGone(t)

	lossy := report.Scenario{Name: "x", Requests: 100000, Statuses: loadgen.StatusCounts{C2xx: 99000, C5xx: 1000}}
	if err := WeftKillEndpoint().Check(&lossy); err == nil {
		t.Error("the kill check passed 1% failures")
	}
	short := report.Scenario{Name: "x", Requests: 1000, Statuses: loadgen.StatusCounts{C2xx: 980, C5xx: 20}}
	if err := WeftKillEndpoint().Check(&short); err == nil {
		t.Error("the kill check passed more failures than requests in flight")
	}
	ok := report.Scenario{Name: "x", Requests: 1000, Statuses: loadgen.StatusCounts{C2xx: 996, C5xx: 4}}
	if err := WeftKillEndpoint().Check(&ok); err != nil {
		t.Errorf("the kill check refused 4 failures in a short window: %v", err)
	}
}

// A fault that cannot happen (the load ended first) fails the scenario
// instead of going unnoticed.
func TestFaultAfterTheLoadFails(t *testing.T) {
	var log pidLog
	sc := Direct()
	sc.Fault = &Fault{Description: "never", At: 5, Do: func(*Env) error { return nil }}
	opts := quickOptions(t, &log, sc)
	opts.Load.Duration = 200 * time.Millisecond
	rep, err := Run(context.Background(), opts)
	if err == nil || rep.Scenarios[0].Status != report.StatusFailed {
		t.Fatalf("a fault after the window: %v %+v", err, rep.Scenarios[0])
	}
}
