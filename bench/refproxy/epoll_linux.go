package refproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"unsafe"
)

// The epoll reference proxy: one goroutine locked to its thread, one
// epoll instance, level-triggered reads, raw non-blocking syscalls. A
// request is read whole, its hop-by-hop headers dropped and
// X-Forwarded-For added, and written to the client's own upstream
// connection; the answer is read whole and relayed the same way. The
// client's next request waits in its buffer until the answer went.

const (
	maxHead = 16 << 10
	maxBody = 64 << 10
)

type loopConn struct {
	cfd, ufd int
	cin      []byte // client bytes, not yet forwarded
	cinN     int
	uin      []byte // upstream bytes, not yet relayed
	uinN     int
	out      []byte
	waiting  bool // a request went upstream; its answer has not been relayed
}

type loop struct {
	ep, lfd, wake int
	upstream      syscall.Sockaddr
	conns         map[int]*loopConn // by either of its descriptors
}

func serveEpoll(ctx context.Context, listen, upstream string, ready func(net.Addr)) error {
	ua, err := net.ResolveTCPAddr("tcp4", upstream)
	if err != nil {
		return fmt.Errorf("refproxy: upstream %q: %w", upstream, err)
	}
	la, err := net.ResolveTCPAddr("tcp4", listen)
	if err != nil {
		return fmt.Errorf("refproxy: listen %q: %w", listen, err)
	}
	l := &loop{ep: -1, lfd: -1, wake: -1, upstream: sockaddr(ua), conns: map[int]*loopConn{}}
	defer l.close()
	if l.lfd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0); err != nil {
		return err
	}
	_ = syscall.SetsockoptInt(l.lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(l.lfd, sockaddr(la)); err != nil {
		return fmt.Errorf("refproxy: listen %q: %w", listen, err)
	}
	if err := syscall.Listen(l.lfd, 4096); err != nil {
		return err
	}
	if l.ep, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return err
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if e != 0 {
		return e
	}
	l.wake = int(r)
	for _, fd := range []int{l.lfd, l.wake} {
		if err := l.watch(fd); err != nil {
			return err
		}
	}
	sa, err := syscall.Getsockname(l.lfd)
	if err != nil {
		return err
	}
	if ready != nil {
		a := sa.(*syscall.SockaddrInet4)
		ready(&net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port})
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			one := uint64(1)
			_, _ = syscall.Write(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
		case <-stop:
		}
	}()
	defer func() { close(stop); <-stopped }()
	return l.run()
}

func sockaddr(a *net.TCPAddr) *syscall.SockaddrInet4 {
	s := &syscall.SockaddrInet4{Port: a.Port}
	if ip4 := a.IP.To4(); ip4 != nil {
		copy(s.Addr[:], ip4)
	}
	return s
}

func (l *loop) watch(fd int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	return syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev)
}

func (l *loop) close() {
	for fd, c := range l.conns {
		if fd == c.cfd {
			l.drop(c)
		}
	}
	for _, fd := range []int{l.lfd, l.wake, l.ep} {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

func (l *loop) run() error {
	evs := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(l.ep, evs, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			switch fd {
			case l.wake:
				return nil
			case l.lfd:
				l.accept()
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue // dropped earlier in this batch
			}
			if fd == c.cfd {
				l.fromClient(c)
			} else {
				l.fromUpstream(c)
			}
		}
	}
}

func (l *loop) accept() {
	for {
		cfd, _, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN, or a connection gone before it was taken
		}
		ufd, err := l.dial()
		if err != nil {
			syscall.Close(cfd)
			continue
		}
		_ = syscall.SetsockoptInt(cfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		c := &loopConn{cfd: cfd, ufd: ufd, cin: make([]byte, maxHead+maxBody), uin: make([]byte, maxHead+maxBody), out: make([]byte, 0, maxHead+maxBody)}
		l.conns[cfd], l.conns[ufd] = c, c
		if l.watch(cfd) != nil || l.watch(ufd) != nil {
			l.drop(c)
		}
	}
}

// dial connects to the upstream, blocking for at most a second (a
// loopback upstream answers at once), then makes the socket non-blocking.
func (l *loop) dial() (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := syscall.Timeval{Sec: 1}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	if err := syscall.Connect(fd, l.upstream); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (l *loop) drop(c *loopConn) {
	delete(l.conns, c.cfd)
	delete(l.conns, c.ufd)
	syscall.Close(c.cfd)
	syscall.Close(c.ufd)
}

func (l *loop) fromClient(c *loopConn) {
	if c.cinN == len(c.cin) {
		l.drop(c) // a request larger than the reference takes
		return
	}
	n, e := recv(c.cfd, c.cin[c.cinN:])
	if e == syscall.EAGAIN {
		return
	}
	if e != 0 || n == 0 {
		l.drop(c)
		return
	}
	c.cinN += n
	if !c.waiting && l.forwardRequest(c) != nil {
		l.drop(c)
	}
}

func (l *loop) fromUpstream(c *loopConn) {
	n, e := recv(c.ufd, c.uin[c.uinN:])
	if e == syscall.EAGAIN {
		return
	}
	if e != 0 || n == 0 || !c.waiting {
		l.drop(c) // gone, or talking out of turn
		return
	}
	c.uinN += n
	done, err := relay(c.uin[:c.uinN], c.out[:0], "", func(msg []byte, used int) error {
		if err := sendAll(c.cfd, msg); err != nil {
			return err
		}
		c.uinN = copy(c.uin, c.uin[used:c.uinN])
		c.waiting = false
		return nil
	})
	if err == nil && !done && c.uinN == len(c.uin) {
		err = errTooLarge
	}
	if err == nil && done && c.cinN > 0 {
		err = l.forwardRequest(c) // the next request, sent while this one was answered
	}
	if err != nil {
		l.drop(c)
	}
}

// forwardRequest sends the client's buffered request upstream once it is
// whole.
func (l *loop) forwardRequest(c *loopConn) error {
	done, err := relay(c.cin[:c.cinN], c.out[:0], "X-Forwarded-For: 127.0.0.1\r\n", func(msg []byte, used int) error {
		if err := sendAll(c.ufd, msg); err != nil {
			return err
		}
		c.cinN = copy(c.cin, c.cin[used:c.cinN])
		c.waiting = true
		return nil
	})
	if err == nil && !done && c.cinN == len(c.cin) {
		err = errTooLarge
	}
	return err
}

var (
	errTooLarge = errors.New("refproxy: message larger than the reference proxy takes")
	errFraming  = errors.New("refproxy: message the reference proxy does not frame (no Content-Length, chunked, or malformed)")
	headEnd     = []byte("\r\n\r\n")
)

// relay rewrites the whole message at the start of in (start line,
// headers without the hop-by-hop ones, extra, body) into out and hands it
// to send with the bytes of in it used. It reports false, with nothing
// sent, while the message is not whole yet.
func relay(in, out []byte, extra string, send func(msg []byte, used int) error) (bool, error) {
	end := bytes.Index(in, headEnd)
	if end < 0 {
		if len(in) > maxHead {
			return false, errTooLarge
		}
		return false, nil
	}
	first := bytes.IndexByte(in, '\n')
	out = append(out, in[:first+1]...)
	length, framed := 0, false
	rest := in[first+1 : end+2]
	for len(rest) > 0 {
		j := bytes.IndexByte(rest, '\n')
		line := rest[:j+1]
		rest = rest[j+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false, errFraming
		}
		switch name := line[:colon]; {
		case is(name, "connection"), is(name, "keep-alive"), is(name, "proxy-connection"):
			continue
		case is(name, "transfer-encoding"):
			return false, errFraming
		case is(name, "content-length"):
			v, err := strconv.Atoi(string(bytes.TrimSpace(line[colon+1:])))
			if err != nil || v < 0 || v > maxBody || framed {
				return false, errFraming
			}
			length, framed = v, true
		}
		out = append(out, line...)
	}
	if !framed && isResponse(in) && !bodiless(in) {
		return false, errFraming
	}
	out = append(out, extra...)
	out = append(out, "\r\n"...)
	used := end + 4 + length
	if len(in) < used {
		return false, nil
	}
	out = append(out, in[end+4:used]...)
	return true, send(out, used)
}

func isResponse(m []byte) bool { return bytes.HasPrefix(m, []byte("HTTP/")) }

// bodiless reports a response status that has no body (1xx, 204, 304).
func bodiless(m []byte) bool {
	if len(m) < 12 {
		return false
	}
	code := m[9:12]
	return code[0] == '1' || string(code) == "204" || string(code) == "304"
}

// is compares a header name with a lower-case name, ignoring case.
func is(name []byte, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i, b := range name {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if b != lower[i] {
			return false
		}
	}
	return true
}

func recv(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(n), e
}

// sendAll writes p; a full socket buffer is waited on for at most a
// second at a time (poll), then the connection is given up.
func sendAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			p = p[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			pfd := struct {
				fd             int32
				events, revent int16
			}{fd: int32(fd), events: 0x4} // POLLOUT
			k, _, e := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 1000)
			if e != 0 && e != syscall.EINTR {
				return e
			}
			if k == 0 && e == 0 {
				return syscall.ETIMEDOUT
			}
		default:
			return e
		}
	}
	return nil
}
