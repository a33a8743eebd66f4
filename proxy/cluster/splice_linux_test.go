package cluster

import (
	"net"
	"syscall"
	"testing"
)

// A spliced transfer between loopback sockets asks for fixed buffers
// (loopbackSocketBuffer, doubled by Linux): SO_RCVBUF where the bytes
// come from, SO_SNDBUF where they go, and leaves the other two alone.
func TestBoundLoopbackSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = s.Close() })
	src, dst := c.(*net.TCPConn), s.(*net.TCPConn)
	sockopt := func(c *net.TCPConn, opt int) int {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var serr error
		if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt) }); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		return v
	}
	dstRcv := sockopt(dst, syscall.SO_RCVBUF)
	srcSnd := sockopt(src, syscall.SO_SNDBUF)
	boundLoopback(src, dst)
	if got := sockopt(src, syscall.SO_RCVBUF); got != 2*loopbackSocketBuffer {
		t.Errorf("source SO_RCVBUF %d, want %d", got, 2*loopbackSocketBuffer)
	}
	if got := sockopt(dst, syscall.SO_SNDBUF); got != 2*loopbackSocketBuffer {
		t.Errorf("destination SO_SNDBUF %d, want %d", got, 2*loopbackSocketBuffer)
	}
	if got := sockopt(dst, syscall.SO_RCVBUF); got != dstRcv {
		t.Errorf("destination SO_RCVBUF moved: %d, was %d", got, dstRcv)
	}
	if got := sockopt(src, syscall.SO_SNDBUF); got != srcSnd {
		t.Errorf("source SO_SNDBUF moved: %d, was %d", got, srcSnd)
	}
}

// kpipe's size is the pipe's real capacity: what the kernel granted of
// splicePipeSize (or its default when it refused), as F_GETPIPE_SZ reads
// it. A step moves at most that much.
func TestPipeSizeIsTheKernels(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	w, r := testClientSocket(t)
	var p kpipe
	if err := p.openPipe(r, w.(*net.TCPConn)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	const fGetPipeSz = 1032 // F_GETPIPE_SZ
	sz, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p.w), fGetPipeSz, 0)
	if e != 0 {
		t.Fatal(e)
	}
	if p.size != int(sz) {
		t.Fatalf("kpipe size %d, the kernel's %d", p.size, sz)
	}
}
