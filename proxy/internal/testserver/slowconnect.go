package testserver

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// SlowConnect is a loopback address whose connects hang until Open: its
// socket listens with no room in its accept queue (backlog 0, one
// connection queued and never accepted), so the kernel drops the SYNs
// that come, as a host that is slow to answer does. After Open, a connect
// under way completes with its client's next SYN retransmission (about a
// second after the first on Linux): a connect that takes a second, and
// succeeds within any connect_timeout of a few seconds.
type SlowConnect struct {
	// Addr is the address to connect to.
	Addr string
	port int
	f    *os.File // the listening socket
}

// StartSlowConnect makes a SlowConnect, closed when the test ends. It
// skips the test where connects to a full accept queue do not hang, or
// where /proc/net/tcp (Connecting's view) is missing.
func StartSlowConnect(t testing.TB) *SlowConnect {
	t.Helper()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skipf("no /proc/net/tcp to see connects under way: %v", err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "slowconnect") // closes fd once, at cleanup
	t.Cleanup(func() { _ = f.Close() })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	s := &SlowConnect{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, f: f}
	filler, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = filler.Close() })
	if probe, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond); err == nil {
		_ = probe.Close()
		t.Skip("connects to a full accept queue do not hang here")
	}
	return s
}

// Connecting reports whether a connect to s is under way: a socket in
// SYN_SENT towards its port, as /proc/net/tcp lists it.
func (s *SlowConnect) Connecting() bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	// Columns: sl local_address rem_address st ...; addresses are
	// hex IP:port, st 02 is SYN_SENT.
	want := []byte(fmt.Sprintf(":%04X", s.port))
	for _, line := range bytes.Split(b, []byte("\n"))[1:] {
		f := bytes.Fields(line)
		if len(f) > 3 && bytes.HasSuffix(f[2], want) && string(f[3]) == "02" {
			return true
		}
	}
	return false
}

// Open makes the connects go through from now on, and returns the
// listener to serve them on (the caller closes it). The connection
// queued to fill the queue is accepted first, and closed.
func (s *SlowConnect) Open(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.FileListener(s.f) // a dup of the socket
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	_ = c.Close()
	return ln
}
