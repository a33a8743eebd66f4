package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Spec says how to start one subprocess.
type Spec struct {
	// Name labels errors and logs.
	Name string
	Path string
	Args []string
	Dir  string
	// Env is added to the harness's environment.
	Env []string
	// CPUs, when set, is a taskset CPU list ("1", "0,2-3") the process and
	// every child it starts are pinned to.
	CPUs   string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Process is a started subprocess, leader of its own process group.
type Process struct {
	name    string
	cmd     *exec.Cmd
	pid     int
	exited  chan struct{}
	waitErr error
	stopMu  sync.Mutex
	stopped bool
}

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

// Name is the Spec's name.
func (p *Process) Name() string { return p.name }

// PID is the leader's process ID, which is also the process group ID.
func (p *Process) PID() int { return p.pid }

// Exited is closed once the leader has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is the leader's exit status once Exited is closed.
func (p *Process) ExitErr() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
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

// Alive reports whether a process with this PID exists and is not a zombie.
func Alive(pid int) bool {
	st, err := readStat(pid)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	return st.state != 'Z' && st.state != 'X'
}
