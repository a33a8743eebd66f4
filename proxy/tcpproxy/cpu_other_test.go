//go:build !unix

package tcpproxy_test

import (
	"runtime"
	"testing"
	"time"
)

// processCPU skips b: its cpu-ns/op is the process's CPU time, read with
// getrusage, which is not supported on this OS.
func processCPU(b *testing.B) time.Duration {
	b.Skipf("cpu-ns/op: the process's CPU time (getrusage) is not supported on %s", runtime.GOOS)
	return 0
}
