package loadgen

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine the tests started is still
// running 5s after they passed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settle{m}, leakOptions...)
}

// leakOptions exempt fasthttp's process-wide goroutines, which are not the
// harness's: per-host connection cleaners and a Client's host-client
// cleaner (they end once idle connections expire), the server date ticker, the DNS cache cleaner and the
// worker-pool cleaner each server leaves sleeping for up to 10s.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// settle runs the tests and, when they pass, gives goroutines up to 5s to
// end before goleak's own short retries look for leaks.
type settle struct{ m *testing.M }

// Run runs the tests and waits for their goroutines to end.
func (s settle) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(5 * time.Second)
	for code == 0 && goleak.Find(leakOptions...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}
