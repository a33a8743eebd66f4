//go:build !unix

package cluster

import (
	"errors"
	"runtime"
)

// armAnswerWait reports false: the answer wait writes a non-blocking
// socket from inside a raw read, and a socket here is not one (Windows
// sockets use overlapped I/O). A request's last bytes go by the
// connection's ordinary Write, as over TLS.
func (cc *countedConn) armAnswerWait() bool { return false }

// writeFD is never reached here: armAnswerWait never arms.
func writeFD(uintptr, []byte) (int, error) {
	return 0, errors.New("cluster: the answer wait's raw socket write is not supported on " + runtime.GOOS)
}
