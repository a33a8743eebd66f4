// Package leaktest is the bench packages' TestMain: it fails a test run
// when a goroutine the tests started is still running 5s after they
// passed, with fasthttp's process-wide goroutines exempt. Test-only.
package leaktest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// options exempt fasthttp's process-wide goroutines, which are not the
// harness's: per-host connection cleaners and a Client's host-client
// cleaner (they end once idle connections expire), the server date ticker,
// the DNS cache cleaner and the worker-pool cleaner each server leaves
// sleeping for up to 10s.
var options = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// Main runs the tests, gives their goroutines up to 5s to end (goleak's
// own retries are short), then lets goleak fail the run on any left.
// extra options (e.g. goleak.Cleanup) are added to the exemptions.
func Main(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(settle{m}, append(append([]goleak.Option(nil), options...), extra...)...)
}

type settle struct{ m *testing.M }

func (s settle) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(5 * time.Second)
	for code == 0 && goleak.Find(options...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}
