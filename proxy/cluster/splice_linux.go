package cluster

import (
	"io"
	"net"
	"os"
	"syscall"
)

const (
	spliceOK       = true
	splicePipeSize = 256 << 10 // bounds the kernel memory a transfer holds
	fSetPipeSz     = 1031      // F_SETPIPE_SZ
	spliceFlags    = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
)

// kpipe is a kernel pipe that bytes cross on their way from one socket
// to another. The zero value is not open.
type kpipe struct {
	r, w int
	size int // its capacity: the most one step moves
	open bool
}

// openPipe opens the pipe for bytes from src to dst, as large as
// splicePipeSize when the kernel lets it grow, and bounds the two
// sockets' buffers if they are loopback (boundLoopback).
func (p *kpipe) openPipe(src, dst *net.TCPConn) error {
	boundLoopback(src, dst)
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return os.NewSyscallError("pipe2", err)
	}
	p.r, p.w, p.size, p.open = fds[0], fds[1], 64<<10, true // a pipe's default capacity
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p.w), fSetPipeSz, splicePipeSize); e == 0 {
		p.size = splicePipeSize
	}
	return nil
}

func (p *kpipe) close() {
	if p.open {
		_ = syscall.Close(p.r)
		_ = syscall.Close(p.w)
		p.open = false
	}
}

// move moves n bytes from src to dst through the pipe, calling before
// ahead of each step's read from src and again ahead of its write to dst
// (to push deadlines: a wait for one side must not use up the other's
// idle bound). in is what was taken from src, out what reached dst
// (less than in only when dst failed). An error from dst's side is a
// *WriteError; src closing before n bytes is io.ErrUnexpectedEOF.
func (p *kpipe) move(src, dst *net.TCPConn, n int64, before func()) (in, out int64, err error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return 0, 0, &WriteError{Err: err}
	}
	for in < n {
		before()
		// Source socket -> pipe.
		var k int64
		var serr error
		rerr := rc.Read(func(fd uintptr) bool {
			for {
				k, serr = syscall.Splice(int(fd), nil, p.w, nil, int(min(n-in, int64(p.size))), spliceFlags)
				if serr != syscall.EINTR {
					return serr != syscall.EAGAIN
				}
			}
		})
		if rerr == nil && serr != nil {
			rerr = os.NewSyscallError("splice", serr)
		}
		if rerr != nil {
			return in, out, rerr
		}
		if k == 0 {
			return in, out, io.ErrUnexpectedEOF // the source closed mid-body
		}
		in += k
		// Again before the write: the read may have waited on src for
		// longer than dst's deadline, which bounds dst's own pace only.
		before()
		// Pipe -> destination socket.
		for left := k; left > 0; {
			var w int64
			var werr error
			err := wc.Write(func(fd uintptr) bool {
				for {
					w, werr = syscall.Splice(p.r, nil, int(fd), nil, int(left), spliceFlags)
					if werr != syscall.EINTR {
						return werr != syscall.EAGAIN
					}
				}
			})
			if err == nil && werr != nil {
				err = os.NewSyscallError("splice", werr)
			}
			if err != nil {
				return in, out, &WriteError{Err: err}
			}
			left -= w
			out += w
		}
	}
	return in, out, nil
}

// splice moves b.left bytes from src to dst through a pipe, pushing src's
// read deadline ahead as the body's idle bound asks.
func (b *h1Body[C]) splice(src, dst *net.TCPConn, tick func()) (int64, error) {
	var p kpipe
	if err := p.openPipe(src, dst); err != nil {
		return 0, &WriteError{Err: err}
	}
	defer p.close()
	_, out, err := p.move(src, dst, int64(b.left), func() { tick(); b.pushReadDeadline(src) })
	b.left -= int(out)
	splicedResponseBytes.Add(out)
	if err != nil {
		if isTimeout(err) && !IsWriteError(err) {
			err = ErrBodyIdle
		}
		return out, err
	}
	b.eof = true
	return out, nil
}

// loopbackSocketBuffer is the socket buffer a spliced transfer asks of a
// loopback peer's socket (the kernel doubles it): SO_RCVBUF where the
// bytes come from, SO_SNDBUF where they go. Left to autotuning, a fast
// loopback transfer grows them to megabytes, and the pages spliced
// through weft sat so long in them that the receiving side's copy
// missed the cache: a 1 GiB download cost weft's process and its client
// about twice the CPU with the buffers autotuned (docs/benchmarks.md,
// round 3). On loopback the round trip is microseconds, so 512 KiB in
// flight does not bound throughput; a socket to another host keeps its
// autotuned buffers (its round trip needs them).
const loopbackSocketBuffer = 256 << 10

// boundLoopback sets the buffers of a spliced transfer's loopback
// sockets (loopbackSocketBuffer). They stay so for the connection's life.
func boundLoopback(src, dst *net.TCPConn) {
	if isLoopback(src) {
		_ = src.SetReadBuffer(loopbackSocketBuffer)
	}
	if isLoopback(dst) {
		_ = dst.SetWriteBuffer(loopbackSocketBuffer)
	}
}

func isLoopback(c *net.TCPConn) bool {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}
