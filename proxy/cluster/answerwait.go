package cluster

import (
	"net"
	"os"
	"syscall"
)

// A request's last write and the wait for its answer, in one step. Go's
// netpoller forgets a socket's readiness when a read begins, so a read
// always tries the socket first: right after a request goes upstream
// that try finds nothing (the upstream has not answered yet; pinned to
// the proxy's core it cannot have), costs a read that returns EAGAIN,
// then the goroutine parks until the answer comes and reads again. Here
// the request's last bytes are written from inside a raw read on the
// connection (syscall.RawConn.Read): its readiness is reset before the
// write, so the answer's arrival cannot be missed, and the goroutine
// parks at once; the read that follows finds the answer. One read
// syscall fewer per request, on the path every small request takes.
// Unix only (answerwait_unix.go); elsewhere armAnswerWait declines and
// the write is an ordinary one (answerwait_other.go).

// answerWait is a connection's state for that step, made on its first
// use and kept with the connection.
type answerWait struct {
	rc    syscall.RawConn
	step  func(uintptr) bool // writeThenWait, bound once
	p     []byte             // what the step writes
	n     int                // of p, written
	err   error              // the write's error
	wrote bool
	armed bool // the next Write is a request's last
}

func (cc *countedConn) disarmAnswerWait() {
	if cc.aw != nil {
		cc.aw.armed = false
	}
}

// Write writes p; armed, it then waits for the answer (armAnswerWait).
func (cc *countedConn) Write(p []byte) (int, error) {
	aw := cc.aw
	if aw == nil || !aw.armed {
		return cc.write(p)
	}
	aw.armed = false
	aw.p, aw.n, aw.err, aw.wrote = p, 0, nil, false
	// The wait's own error (a deadline, a closed connection) is the
	// read's to report: the write went.
	_ = aw.rc.Read(aw.step)
	n, err := aw.n, aw.err
	aw.p = nil
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Source: cc.LocalAddr(), Addr: cc.RemoteAddr(), Err: os.NewSyscallError("write", err)}
	}
	if n < len(p) {
		// The socket's buffer was full: the rest the ordinary way.
		k, err := cc.write(p[n:])
		return n + k, err
	}
	return n, nil
}

// writeThenWait is the raw read's step: the first call writes, and asks
// to wait for readability when all of p went; the next (readable) ends.
func (aw *answerWait) writeThenWait(fd uintptr) bool {
	if aw.wrote {
		return true
	}
	aw.wrote = true
	for aw.n < len(aw.p) {
		k, err := writeFD(fd, aw.p[aw.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true // finished outside, by an ordinary write
		case err != nil:
			aw.err = err
			return true
		}
		aw.n += k
	}
	return false
}
