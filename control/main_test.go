package control_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/meshtest"
)

// TestMain fails the run when goroutines started by the tests (servers,
// watch clients, scrapers, proxies) outlive them. fasthttp's per-host
// connection cleaners are not counted: they belong to the proxy's upstream
// pools and end on their own once idle connections expire; nor is the
// worker-pool cleaner each fasthttp server leaves sleeping for 10s.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		meshtest.HTTP.CloseIdleConnections()
		var left []string
		start, deadline := time.Now(), time.Now().Add(10*time.Second)
		for {
			left = leftovers()
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if d := time.Since(start); d > time.Second {
			fmt.Fprintf(os.Stderr, "goroutines took %v to end\n", d)
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutines left behind:\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leftovers lists the stacks of goroutines other than this one, fasthttp's
// process-wide ones (connection cleaners, the server date ticker) and
// its worker-pool cleaner, which sleeps up to 10s after a server stops.
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
