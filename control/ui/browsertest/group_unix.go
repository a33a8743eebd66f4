//go:build unix

package browsertest

import (
	"os/exec"
	"syscall"
	"testing"
)

// ownGroup starts cmd in its own process group and has its context's
// end kill the whole group (Chromium's helper processes too).
func ownGroup(t testing.TB, cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
