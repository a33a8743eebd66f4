package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run when anything the demo started outlives it:
// goroutines (servers, the control plane and its watches and scraper, the
// control client, proxies, Wasm plugins) or child processes (the go
// commands that build the plugins). Both get up to 15s to end.
func TestMain(m *testing.M) {
	opts := append([]goleak.Option{goleak.Cleanup(exitNoChildren)}, leakOptions...)
	goleak.VerifyTestMain(settle{m}, opts...)
}

// leakOptions exempt fasthttp's process-wide goroutines: per-host
// connection cleaners end once idle connections expire; the server date
// ticker and the worker-pool cleaner, which sleeps up to 10s after a
// server stops, are shared.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// settle runs the tests and, when they pass, gives their goroutines up to
// 15s to end before goleak's own short retries look for leaks.
type settle struct{ m *testing.M }

// Run runs the tests and waits for their goroutines to end.
func (s settle) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(15 * time.Second)
	for code == 0 && goleak.Find(leakOptions...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}

// exitNoChildren exits with code, or with 1 when the run had passed but
// child processes are still running 15s later.
func exitNoChildren(code int) {
	if code == 0 {
		kids := children()
		for deadline := time.Now().Add(15 * time.Second); len(kids) > 0 && time.Now().Before(deadline); kids = children() {
			time.Sleep(50 * time.Millisecond)
		}
		if len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "%d child processes left behind:\n%s\n", len(kids), strings.Join(kids, "\n"))
			code = 1
		}
	}
	os.Exit(code)
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
