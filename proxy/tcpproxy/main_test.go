package tcpproxy_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when a goroutine of this package (or of its
// tests' servers) outlives the tests: a connection handler, a splice
// direction, a dial or an accept loop that did not stop.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := waitGoroutines(10 * time.Second); left != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

func waitGoroutines(limit time.Duration) string {
	deadline := time.Now().Add(limit)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range bytes.Split(buf, []byte("\n\n")) {
			s := string(g)
			if strings.Contains(s, "TestMain") || strings.Contains(s, "waitGoroutines") {
				continue
			}
			if strings.Contains(s, "weft/proxy/tcpproxy.") || strings.Contains(s, "weft/proxy/tcpproxy_test.") {
				left = append(left, s)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
