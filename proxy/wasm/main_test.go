package wasm

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when goroutines started by the package outlive the
// tests (tick loops, rebuilds, call-outs).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var leaked string
		for i := 0; i < 200; i++ {
			leaked = ourGoroutines()
			if leaked == "" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func ourGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "weft/proxy/wasm.(*") && !strings.Contains(g, "TestMain") && !strings.Contains(g, "ourGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
