//go:build unix

package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// checkPrivileges refuses early and clearly what cannot work.
func (l *remoteLink) checkPrivileges() error {
	if os.Geteuid() != 0 {
		return errors.New("weft bench transfer: -remote-netns needs root (it creates a network namespace, a veth pair and tc qdiscs)")
	}
	var err error
	if l.ipPath, err = exec.LookPath("ip"); err != nil {
		return fmt.Errorf("weft bench transfer: -remote-netns needs iproute2's ip: %w", err)
	}
	if l.rateBits > 0 || l.delay > 0 {
		if l.tcPath, err = exec.LookPath("tc"); err != nil {
			return fmt.Errorf("weft bench transfer: -link-rate and -link-delay need iproute2's tc: %w", err)
		}
	}
	return nil
}

// pidAlive reports whether a process with this PID exists (signal 0).
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
