//go:build unix && !linux

package proc

import "syscall"

// sysProcAttr puts the child in its own process group (Stop signals the
// group). Outside Linux there is no parent-death signal: a child outlives
// a harness killed with SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
