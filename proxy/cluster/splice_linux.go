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

// openPipe opens the pipe, as large as splicePipeSize when the kernel
// lets it grow.
func (p *kpipe) openPipe() error {
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
// ahead of each step (to push deadlines). in is what was taken from src,
// out what reached dst (less than in only when dst failed). An error
// from dst's side is a *WriteError; src closing before n bytes is
// io.ErrUnexpectedEOF.
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
	if err := p.openPipe(); err != nil {
		return 0, &WriteError{Err: err}
	}
	defer p.close()
	_, out, err := p.move(src, dst, int64(b.left), func() { tick(); b.pushReadDeadline(src) })
	b.left -= int(out)
	splicedResponseBytes.Add(out)
	if err != nil {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() && !IsWriteError(err) {
			err = ErrBodyIdle
		}
		return out, err
	}
	b.eof = true
	return out, nil
}
