//go:build unix

package cluster

import (
	"net"
	"syscall"

	"github.com/weftmesh/weft/proxy/internal/sockio"
)

// armAnswerWait makes the connection's next Write a request's last: it
// returns once the bytes are written and the answer can be read (or the
// read deadline passed, or the connection broke: the read that follows
// finds out). It reports false when the connection cannot (not plain
// TCP); disarmAnswerWait undoes it when no Write came.
func (cc *countedConn) armAnswerWait() bool {
	if cc.aw == nil {
		tc, ok := cc.Conn.(*net.TCPConn)
		if !ok {
			return false
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			return false
		}
		cc.aw = &answerWait{rc: rc}
		cc.aw.step = cc.aw.writeThenWait
	}
	cc.aw.armed = true
	return true
}

// writeFD writes once to a non-blocking socket: raw (sockio) where it
// can, so the write hands no thread off.
func writeFD(fd uintptr, p []byte) (int, error) {
	if sockio.Available {
		n, e := sockio.WriteRaw(fd, p)
		if e != 0 {
			return 0, e
		}
		return n, nil
	}
	return syscall.Write(int(fd), p)
}
