package cluster

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/sockio"
)

// upstreamPair is a loopback TCP pair as an upstream connection: cc, a
// countedConn as the endpoint's dial makes it (sockio when available), and
// the upstream's end.
func upstreamPair(t *testing.T) (*countedConn, *net.TCPConn) {
	w, r := testClientSocket(t)
	tc := w.(*net.TCPConn)
	cc := &countedConn{Conn: tc}
	if sockio.Available {
		cc.sock = sockio.New(tc)
	}
	return cc, r
}

// A request's last write that the socket's buffer cannot take whole (the
// upstream reads slower than weft writes) is finished the ordinary way:
// Write returns only when every byte went, and says so.
func TestAnswerWaitFinishesAFullSocket(t *testing.T) {
	cc, up := upstreamPair(t)
	// Small buffers: 8 MiB cannot fit in them, the armed write stops at
	// EAGAIN.
	_ = cc.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	_ = up.SetReadBuffer(64 << 10)
	p := pattern(8<<20, 16)
	got := make(chan clientRead, 1)
	go func() {
		_ = up.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net
		b := make([]byte, len(p))
		n, err := io.ReadFull(up, b)
		got <- clientRead{b[:n], err}
	}()
	if !cc.armAnswerWait() {
		t.Fatal("a TCP connection refused the answer wait")
	}
	_ = cc.SetDeadline(time.Now().Add(30 * time.Second)) // a safety net
	n, err := cc.Write(p)
	if n != len(p) || err != nil {
		t.Fatalf("Write of %d bytes: %d, %v", len(p), n, err)
	}
	r := <-got
	if r.err != nil || !bytes.Equal(r.b, p) {
		t.Fatalf("the upstream read %d bytes (%v), want %d", len(r.b), r.err, len(p))
	}
	if cc.aw.armed || cc.aw.p != nil {
		t.Fatal("the answer wait is still armed, or holds the written bytes")
	}
}

// The same write when the socket stays full past the write deadline: the
// rest's ordinary write fails, and Write reports the bytes that went with
// the error (never a short count with no error, which bufio would take
// for io.ErrShortWrite, or a count past what went).
func TestAnswerWaitFullSocketPastDeadline(t *testing.T) {
	cc, up := upstreamPair(t)
	_ = cc.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	_ = up.SetReadBuffer(64 << 10)
	p := pattern(8<<20, 17)
	if !cc.armAnswerWait() {
		t.Fatal("a TCP connection refused the answer wait")
	}
	_ = cc.SetReadDeadline(time.Now().Add(30 * time.Second))
	_ = cc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := cc.Write(p)
	if err == nil || n <= 0 || n >= len(p) {
		t.Fatalf("Write of %d bytes to an upstream that reads nothing: %d, %v", len(p), n, err)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("the error %v (%T) is not the write deadline's", err, err)
	}
	// The upstream holds exactly the n bytes Write reported.
	_ = cc.Conn.(*net.TCPConn).CloseWrite()
	_ = up.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net
	b, rerr := io.ReadAll(up)
	if rerr != nil || len(b) != n || !bytes.Equal(b, p[:n]) {
		t.Fatalf("the upstream read %d bytes (%v), Write reported %d", len(b), rerr, n)
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
