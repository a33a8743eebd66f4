package wasm

import (
	"syscall"
	"time"
	"unsafe"
)

// currentThread is the id of the OS thread running the caller.
func currentThread() int32 { return int32(syscall.Gettid()) }

// threadCPU is the CPU time thread tid of this process has used (its
// CPUCLOCK_SCHED clock, which clock_gettime reads for any thread of the
// process), or false when the thread is gone.
func threadCPU(tid int32) (time.Duration, bool) {
	if tid <= 0 {
		return 0, false
	}
	clock := (^tid)<<3 | 6 // MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
