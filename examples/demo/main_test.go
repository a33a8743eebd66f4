package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when anything the demo started outlives it:
// goroutines (servers, the control plane and its watches and scraper, the
// control client, proxies, Wasm plugins) or child processes (the go
// commands that build the plugins). fasthttp's process-wide goroutines are
// not counted (per-host connection cleaners end once idle connections
// expire; the server date ticker and the worker-pool cleaner, which sleeps
// up to 10s after a server stops, are shared).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var left, kids []string
		start, deadline := time.Now(), time.Now().Add(15*time.Second)
		for {
			left, kids = leftovers(), children()
			if len(left)+len(kids) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if d := time.Since(start); d > time.Second {
			fmt.Fprintf(os.Stderr, "goroutines and processes took %v to end\n", d)
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutines left behind:\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
		if len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "%d child processes left behind:\n%s\n", len(kids), strings.Join(kids, "\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leftovers lists the stacks of goroutines other than this one and
// fasthttp's process-wide ones.
func leftovers() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "testing.(*M).Run"), strings.Contains(g, "main.main"),
			strings.Contains(g, "connsCleaner"), strings.Contains(g, "fasthttp.updateServerDate"),
			strings.Contains(g, "fasthttp.(*workerPool).Start"):
			continue
		}
		out = append(out, g)
	}
	return out
}

// children lists this process's child processes ("pid command"), from
// /proc; nil where there is no /proc.
func children() []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // it ended meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if fields := strings.Fields(s[i+1:]); len(fields) > 1 && fields[1] == self {
			out = append(out, strings.TrimSpace(s[:i+1]))
		}
	}
	return out
}
