package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times. It is 100 on
// every Linux architecture Go supports (reading it needs sysconf, i.e. cgo).
const clockTicks = 100

// Usage is what a process group has consumed.
type Usage struct {
	// CPU is user+system time of every live member, plus that of children
	// they have already reaped.
	CPU time.Duration
	// PeakRSS is the sum of the members' VmHWM (high-water resident set) in
	// bytes. Shared pages count once per member.
	PeakRSS int64
	// Procs is the number of live members.
	Procs int
}

// Usage measures the process group now. Sample it at both ends of a window
// and subtract CPU; take PeakRSS from the later sample.
func (p *Process) Usage() (Usage, error) {
	u, err := GroupUsage(p.pid)
	if err != nil {
		return u, fmt.Errorf("process %q: %w", p.name, err)
	}
	return u, nil
}

// GroupUsage measures every live process of process group pgid.
func GroupUsage(pgid int) (Usage, error) {
	var u Usage
	pids, err := Group(pgid)
	if err != nil {
		return u, err
	}
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			continue // exited between the scan and now
		}
		u.CPU += ticks(st.utime + st.stime + st.cutime + st.cstime)
		if hwm, err := readHWM(pid); err == nil {
			u.PeakRSS += hwm
		}
		u.Procs++
	}
	return u, nil
}

// Group lists the live (non-zombie) processes of process group pgid.
func Group(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != pgid || st.state == 'Z' || st.state == 'X' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

type stat struct {
	state                        byte
	pgrp                         int
	utime, stime, cutime, cstime int64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

// parseStat reads /proc/PID/stat. The command name (field 2) is in
// parentheses and may hold spaces or parentheses, so fields are counted
// from the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return stat{}, errors.New("/proc stat: no command name")
	}
	f := bytes.Fields(b[i+2:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("/proc stat: %d fields after the command name, want at least 15", len(f))
	}
	var st stat
	st.state = f[0][0]
	var err error
	if st.pgrp, err = strconv.Atoi(string(f[2])); err != nil {
		return stat{}, fmt.Errorf("/proc stat: pgrp: %w", err)
	}
	for j, dst := range []*int64{&st.utime, &st.stime, &st.cutime, &st.cstime} {
		if *dst, err = strconv.ParseInt(string(f[11+j]), 10, 64); err != nil {
			return stat{}, fmt.Errorf("/proc stat: field %d: %w", 14+j, err)
		}
	}
	return st, nil
}

// readHWM returns VmHWM from /proc/PID/status in bytes.
func readHWM(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseHWM(b)
}

func parseHWM(b []byte) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("/proc status: VmHWM %q: want \"N kB\"", bytes.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: VmHWM: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("/proc status: no VmHWM (kernel thread or exited)")
}
