package control_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weftmesh/weft/control/internal/meshtest"
)

// TestMain fails the run when goroutines started by the tests (servers,
// watch clients, scrapers, proxies) outlive them by more than 10s.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settle{m}, leakOptions...)
}

// leakOptions exempt fasthttp's process-wide goroutines: per-host
// connection cleaners belong to the proxy's upstream pools and end on their
// own once idle connections expire; the server date ticker never stops; the
// worker-pool cleaner each server leaves sleeps for 10s.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// settle runs the tests and, when they pass, closes the shared test
// client's idle connections and gives goroutines up to 10s to end before
// goleak's own short retries look for leaks.
type settle struct{ m *testing.M }

// Run runs the tests and waits for their goroutines to end.
func (s settle) Run() int {
	code := s.m.Run()
	if code != 0 {
		return code
	}
	meshtest.HTTP.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for goleak.Find(leakOptions...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}
