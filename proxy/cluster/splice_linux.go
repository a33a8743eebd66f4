package cluster

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

const (
	spliceOK       = true
	splicePipeSize = 256 << 10 // bounds the kernel memory a transfer holds
	fSetPipeSz     = 1031      // F_SETPIPE_SZ
	spliceFlags    = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
)

// splice moves b.left bytes from src to dst through a pipe, pushing src's
// read deadline ahead as the body's idle bound asks.
func (b *h1Body[C]) splice(src, dst *net.TCPConn, tick func()) (int64, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return 0, &WriteError{Err: os.NewSyscallError("pipe2", err)}
	}
	pr, pw := p[0], p[1]
	defer syscall.Close(pr)
	defer syscall.Close(pw)
	size := 64 << 10 // a pipe's default capacity
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(pw), fSetPipeSz, splicePipeSize); e == 0 {
		size = splicePipeSize
	}
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return 0, &WriteError{Err: err}
	}
	var total int64
	for b.left > 0 {
		tick()
		if b.idle > 0 {
			if now := time.Now(); now.Sub(b.last) > b.idle/10 {
				b.last = now
				_ = src.SetReadDeadline(now.Add(b.idle))
			}
		}
		// Upstream socket -> pipe.
		var n int64
		var serr error
		rerr := rc.Read(func(fd uintptr) bool {
			for {
				n, serr = syscall.Splice(int(fd), nil, pw, nil, min(b.left, size), spliceFlags)
				if serr != syscall.EINTR {
					return serr != syscall.EAGAIN
				}
			}
		})
		if rerr == nil && serr != nil {
			rerr = os.NewSyscallError("splice", serr)
		}
		if rerr != nil {
			if t, ok := rerr.(interface{ Timeout() bool }); ok && t.Timeout() {
				rerr = ErrBodyIdle
			}
			return total, rerr
		}
		if n == 0 {
			return total, io.ErrUnexpectedEOF // the upstream closed mid-body
		}
		// Pipe -> client socket.
		for left := int(n); left > 0; {
			var k int64
			var werr error
			err := wc.Write(func(fd uintptr) bool {
				for {
					k, werr = syscall.Splice(pr, nil, int(fd), nil, left, spliceFlags)
					if werr != syscall.EINTR {
						return werr != syscall.EAGAIN
					}
				}
			})
			if err == nil && werr != nil {
				err = os.NewSyscallError("splice", werr)
			}
			if err != nil {
				return total, &WriteError{Err: err}
			}
			left -= int(k)
			total += k
		}
		b.left -= int(n)
	}
	b.eof = true
	return total, nil
}
