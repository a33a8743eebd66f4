package proc

import "syscall"

// sysProcAttr puts the child in its own process group (Stop signals the
// group) and has the kernel kill it if the harness dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
