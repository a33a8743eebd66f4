package tcpproxy_test

import (
	"runtime"
	"strings"
)

// releasePending reports whether a replaced config is still waiting out
// the drain grace before its clusters close: the goroutine proxy.Apply
// starts for that sleeps, then runs proxy.release. Tests that check what
// survives the release wait for this to turn false instead of sleeping
// past the grace, which on a loaded machine may not be long enough.
func releasePending() bool {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "weft/proxy.(*Proxy).apply.func") &&
			(strings.Contains(g, "time.Sleep(") || strings.Contains(g, "weft/proxy.release(")) {
			return true
		}
	}
	return false
}
