//go:build unix

package bench

import (
	"syscall"
	"time"
)

// selfCPU is this process's user+system CPU time so far (0 if unknown).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
