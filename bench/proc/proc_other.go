//go:build !unix

package proc

import (
	"fmt"
	"runtime"
	"time"
)

// Start refuses: a benchmark process is the leader of its own process
// group, stopped and measured as a group, and there are no process groups
// to signal here.
func Start(spec Spec) (*Process, error) {
	return nil, fmt.Errorf("process %q: process groups (bench/proc) not supported on %s", spec.Name, runtime.GOOS)
}

// Stop cannot signal a process group here; Start never makes a Process.
func (p *Process) Stop(time.Duration) error {
	return fmt.Errorf("process %q: stopping a process group not supported on %s", p.name, runtime.GOOS)
}

// Kill cannot signal a process group here; Start never makes a Process.
func (p *Process) Kill() error {
	return fmt.Errorf("process %q: killing a process group not supported on %s", p.name, runtime.GOOS)
}
