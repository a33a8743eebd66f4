//go:build !unix

package bench

import (
	"errors"
	"runtime"
)

// checkPrivileges refuses: the remote link is a Linux network namespace,
// a veth pair and tc qdiscs.
func (l *remoteLink) checkPrivileges() error {
	return errors.New("weft bench transfer: -remote-netns: network namespaces are not supported on " + runtime.GOOS)
}

// pidAlive is never reached here (checkPrivileges refuses first); it
// calls every PID alive, so removeStale would remove nothing.
func pidAlive(int) bool { return true }
