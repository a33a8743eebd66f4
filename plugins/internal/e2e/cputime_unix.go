//go:build unix

package e2e

import (
	"syscall"
	"time"
)

// ProcessCPU is the CPU time the test process used so far (every thread:
// the host, the guest, the harness and its loopback upstream); the plugins'
// benchmarks report it per request as cpu-ns/op, which other work on the
// machine moves less than ns/op.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
