//go:build unix

package proc

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Start starts spec in a new process group. The process is also sent SIGKILL
// by the kernel if the harness dies first (Pdeathsig), so a crashed harness
// leaves no server behind.
func Start(spec Spec) (*Process, error) {
	path, args := spec.Path, spec.Args
	if spec.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("process %q: pinning to CPUs %s needs taskset: %w", spec.Name, spec.CPUs, err)
		}
		// taskset execs the command, so the PID stays the command's.
		args = append([]string{"-c", spec.CPUs, path}, args...)
		path = ts
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdin = spec.Stdin
	cmd.Stdout = spec.Stdout
	cmd.Stderr = spec.Stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("process %q: start %s: %w", spec.Name, spec.Path, err)
	}
	p := &Process{name: spec.Name, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Stop ends the whole process group: SIGTERM, then SIGKILL for whatever is
// left after grace. It returns once the leader is reaped and no process of
// the group remains, or an error naming the survivors. Stop is idempotent.
func (p *Process) Stop(grace time.Duration) error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	}
	// The leader is gone; its children (nginx workers) may still be exiting.
	deadline := time.Now().Add(grace + 2*time.Second)
	for {
		left, err := Group(p.pid)
		if err != nil {
			return fmt.Errorf("process %q: %w", p.name, err)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %q: group %d: processes %v still running after SIGKILL", p.name, p.pid, left)
		}
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the whole process group at once with SIGKILL, as a crash
// would (a fault scenario's kill -9), and waits up to 10 s for the leader
// to exit. Stop afterwards reaps what is left.
func (p *Process) Kill() error {
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("process %q: kill: %w", p.name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("process %q: still running 10s after SIGKILL", p.name)
	}
}
