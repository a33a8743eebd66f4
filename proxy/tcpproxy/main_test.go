package tcpproxy_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine outlives the tests by more than
// 10s: a connection handler, a splice direction, a dial or an accept loop
// (of the package or of its tests' servers) that did not stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settle{m}, leakOptions...)
}

// leakOptions exempt nothing: the package and its tests start no
// process-wide goroutines.
var leakOptions []goleak.Option

// settle runs the tests and, when they pass, gives goroutines up to 10s to
// end before goleak's own short retries look for leaks.
type settle struct{ m *testing.M }

// Run runs the tests and waits for their goroutines to end.
func (s settle) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(10 * time.Second)
	for code == 0 && goleak.Find(leakOptions...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}
