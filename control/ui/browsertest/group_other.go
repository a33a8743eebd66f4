//go:build !unix

package browsertest

import (
	"os/exec"
	"runtime"
	"testing"
)

// ownGroup skips t: Chromium runs in its own process group, killed whole
// if it overstays, and there are no process groups here.
func ownGroup(t testing.TB, cmd *exec.Cmd) {
	t.Skipf("browsertest: Chromium in its own process group: not supported on %s", runtime.GOOS)
}
