package proc

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (we ird) (x)) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 100 1000 10 18446744073709551615\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.pgrp != 4240 || st.utime != 250 || st.stime != 75 || st.cutime != 3 || st.cstime != 4 {
		t.Fatalf("parsed %+v", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 notanumber 3 4 5 6 7 8 9 10 11 12 13 14 15"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestParseHWM(t *testing.T) {
	n, err := parseHWM([]byte("Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n"))
	if err != nil || n != 2048*1024 {
		t.Fatalf("got %d, %v", n, err)
	}
	if _, err := parseHWM([]byte("Name:\tkthreadd\n")); err == nil {
		t.Fatal("no VmHWM: want an error")
	}
}

func start(t *testing.T, spec Spec) *Process {
	t.Helper()
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	return p
}

func waitGroupSize(t *testing.T, pgid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := Group(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d has %v, want %d processes", pgid, pids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopKillsTheWholeGroup(t *testing.T) {
	// A leader with two children, like an nginx master and its workers.
	p := start(t, Spec{Name: "tree", Path: "/bin/sh", Args: []string{"-c", "sleep 30 & sleep 30 & wait"}})
	pids := waitGroupSize(t, p.PID(), 3)
	if err := p.Stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if Alive(pid) {
			t.Errorf("pid %d of the group still alive", pid)
		}
	}
	if left, _ := Group(p.PID()); len(left) != 0 {
		t.Fatalf("group still has %v", left)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("leader not reaped")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	p := start(t, Spec{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; while :; do sleep 0.05; done"}})
	pids := waitGroupSize(t, p.PID(), 2)
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if Alive(pid) {
			t.Errorf("pid %d survived SIGKILL", pid)
		}
	}
	if err := p.ExitErr(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("leader exit: %v, want killed by SIGKILL (it ignores SIGTERM)", err)
	}
}

func TestUsageCountsCPUAndMemory(t *testing.T) {
	// Burn a bounded amount of CPU in a child of the leader, then idle.
	p := start(t, Spec{Name: "burn", Path: "/bin/sh", Args: []string{"-c",
		"(i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; touch done; sleep 30) & wait"}, Dir: t.TempDir()})
	deadline := time.Now().Add(20 * time.Second)
	var u Usage
	for {
		var err error
		if u, err = p.Usage(); err != nil {
			t.Fatal(err)
		}
		if u.CPU >= 50*time.Millisecond || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if u.CPU < 50*time.Millisecond || u.PeakRSS <= 0 || u.Procs < 2 {
		t.Fatalf("usage %+v: want CPU ≥ 50ms from the busy child, RSS > 0, 2+ processes", u)
	}
}

func TestPinning(t *testing.T) {
	p := start(t, Spec{Name: "pinned", Path: "/bin/sleep", Args: []string{"30"}, CPUs: "0"})
	// taskset sets the mask and then execs: the PID becomes sleep's own.
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/comm")
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d runs %q, want sleep after taskset's exec", p.PID(), comm)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var allowed string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			allowed = strings.TrimSpace(v)
		}
	}
	if allowed != "0" {
		t.Fatalf("Cpus_allowed_list = %q, want 0", allowed)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Spec{Name: "missing", Path: "/nonexistent/bin"}); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("err = %v, want one naming the process", err)
	}
}
