package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Available reports whether Socket works on this platform.
const Available = true

// maxRW bounds one read or write, as internal/poll does.
const maxRW = 1 << 30

// Socket reads and writes one TCP connection (see the package doc). Like a
// net.Conn, it may be used by several goroutines at once.
type Socket struct {
	tc *net.TCPConn
	rc syscall.RawConn
	r  op
	w  op
	// rmu and wmu serialise the reads and the writes (the descriptor's
	// own locks are taken only inside the raw call, after op is filled).
	rmu, wmu sync.Mutex

	mu     sync.Mutex // guards rd, wd and eager: deadlines may be set from any goroutine
	rd, wd deadline   // deadline_linux.go
	eager  bool
}

// op is the state of one direction's call: the raw step reads it.
type op struct {
	step  func(uintptr) bool // bound once: a call allocates nothing
	p     []byte
	n     int
	errno syscall.Errno
}

// New returns a Socket on tc, or nil when its descriptor cannot be had.
func New(tc *net.TCPConn) *Socket {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Socket{tc: tc, rc: rc}
	s.r.step = s.readStep
	s.w.step = s.writeStep
	return s
}

// Conn is the connection the socket reads and writes.
func (s *Socket) Conn() *net.TCPConn { return s.tc }

// Read reads like net.TCPConn.Read.
func (s *Socket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	o := &s.r
	o.p, o.n, o.errno = p, 0, 0
	err := s.rc.Read(o.step)
	for err != nil && timedOut(err) && s.rearm(&s.rd, false) {
		err = s.rc.Read(o.step) // a deadline kept lazily fired: the caller's is later
	}
	n, errno := o.n, o.errno
	o.p = nil
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *Socket) readStep(fd uintptr) bool {
	o := &s.r
	for {
		n, e := recv(fd, o.p)
		switch e {
		case 0:
			o.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the netpoller waits for readability
		default:
			o.errno = e
			return true
		}
	}
}

// Write writes all of p like net.TCPConn.Write: it waits for room in the
// socket's buffer when it is full.
func (s *Socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	o := &s.w
	o.p, o.n, o.errno = p, 0, 0
	var err error
	if len(p) > 0 {
		err = s.rc.Write(o.step)
		for err != nil && timedOut(err) && s.rearm(&s.wd, true) {
			err = s.rc.Write(o.step) // as in Read; o.n keeps what went
		}
	}
	n, errno := o.n, o.errno
	o.p = nil
	switch {
	case err != nil:
		return n, s.opError("write", err)
	case errno != 0:
		return n, s.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func (s *Socket) writeStep(fd uintptr) bool {
	o := &s.w
	for o.n < len(o.p) {
		k := min(len(o.p)-o.n, maxRW)
		n, e := send(fd, o.p[o.n:o.n+k])
		switch e {
		case 0:
			o.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the netpoller waits for writability
		default:
			o.errno = e
			return true
		}
	}
	return true
}

// WriteRaw writes p on fd once, from inside another raw step: the
// bytes written, and EAGAIN when the buffer is full.
func WriteRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, e := send(fd, p[:min(len(p), maxRW)])
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return n, 0
	}
}

// opError is err as net.TCPConn's Read or Write reports it: the raw
// connection's own errors (a deadline, a closed connection) come wrapped
// in an OpError named "raw-read" or "raw-write".
func (s *Socket) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.tc.LocalAddr(), Addr: s.tc.RemoteAddr(), Err: err}
}
