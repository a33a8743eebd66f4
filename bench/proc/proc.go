package proc

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
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

// Alive reports whether a process with this PID exists and is not a zombie.
func Alive(pid int) bool {
	st, err := readStat(pid)
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	return st.state != 'Z' && st.state != 'X'
}
