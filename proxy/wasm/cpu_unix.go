//go:build unix

package wasm

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) the process has used, or
// -1 when it cannot be read. The watchdog reads it once a tick.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
