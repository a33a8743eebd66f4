package cluster

import (
	"net"
	"syscall"
	"unsafe"
)

// idleCheck: peerGone looks at the socket.
const idleCheck = true

// idlePeek is a connection's state for peerGone, made on its first check
// and kept with the connection.
type idlePeek struct {
	rc    syscall.RawConn
	step  func(uintptr) // peekStep, bound once: a check allocates nothing
	buf   [1]byte
	n     int
	errno syscall.Errno
}

// peerGone reports whether the upstream closed or reset this idle
// connection, or (unless isTLS) sent it bytes: one recv with MSG_PEEK and
// MSG_DONTWAIT, which takes nothing off the socket and never waits. Under
// TLS a byte may be a record the client has yet to read (a session
// ticket, an alert that a FIN follows), so only the end and errors count.
func (cc *countedConn) peerGone(isTLS bool) bool {
	p := cc.peek
	if p == nil {
		tc, ok := cc.Conn.(*net.TCPConn)
		if !ok {
			return false
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			return false
		}
		p = &idlePeek{rc: rc}
		p.step = p.peekStep
		cc.peek = p
	}
	// Control, not Read: it neither waits nor looks at the read deadline
	// the last request left behind (long past, on an idle connection).
	if err := p.rc.Control(p.step); err != nil {
		return true // the descriptor is closed
	}
	switch p.errno {
	case 0:
		return p.n == 0 || !isTLS // 0: the upstream's FIN
	case syscall.EAGAIN:
		return false // nothing to read: open and quiet, as an idle connection is
	}
	return true // ECONNRESET and the like
}

// peekStep runs inside RawConn.Control.
func (p *idlePeek) peekStep(fd uintptr) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		p.n, p.errno = int(n), e
		return
	}
}
