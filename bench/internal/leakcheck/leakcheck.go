// Package leakcheck lets the bench packages' tests fail when a goroutine the
// harness started (a load worker, an upstream server, a process watcher) is
// still running after the tests. It must stay test support only.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs m, then fails the run if goroutines created by bench code are
// still alive after a grace period; use it as TestMain's body.
func Main(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if leaked := Leaked(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", leaked)
			code = 1
		}
	}
	return code
}

// Leaked waits up to wait for goroutines started by code under weft/bench/
// to finish and returns the stacks of those that did not.
func Leaked(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 4<<20)
		stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
		var ours []string
		for _, s := range stacks {
			if strings.Contains(s, "weft/bench/") && !strings.Contains(s, "leakcheck.Leaked") {
				ours = append(ours, s)
			}
		}
		if len(ours) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(ours, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
