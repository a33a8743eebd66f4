package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Readiness after a short read. A read that returned fewer bytes than it
// asked for drained the socket, and the netpoller is edge-triggered, so it
// is tempting to let the next Read wait first and read after, saving the
// read that finds nothing (EAGAIN) on a connection that waits for its next
// request. It is wrong: syscall.RawConn.Read resets the descriptor's
// readiness before its first try, so bytes (or a FIN) that arrived while
// the goroutine was parked on another socket, and whose event the
// netpoller already took, would wait for more bytes or the deadline. These
// tests are what such a change would break: each one's bytes come at a
// different point, and every Read is bounded by a deadline, never timed.

// bound is the deadline every Read here must beat: generous, so that a
// busy machine cannot fail a correct Read; only a Read that waits for an
// edge that already went reaches it.
const bound = 20 * time.Second

// queued waits until c's receive queue holds bytes, so that the event of
// their arrival is on its way to the netpoller.
func queued(c *net.TCPConn) error {
	return until(c, "bytes in the receive queue", func(fd int) (bool, error) {
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		return n > 0, err
	})
}

// halfClosed waits until c's peer's FIN arrived (TCP state CLOSE_WAIT).
func halfClosed(c *net.TCPConn) error {
	return until(c, "the peer's FIN", func(fd int) (bool, error) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err == nil && info.State == unix.BPF_TCP_CLOSE_WAIT, err
	})
}

// until polls cond on c's descriptor until it holds, for at most bound.
func until(c *net.TCPConn, what string, cond func(fd int) (bool, error)) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	for end := time.Now().Add(bound); time.Now().Before(end); time.Sleep(time.Millisecond) {
		var ok bool
		var cerr error
		if err := rc.Control(func(fd uintptr) { ok, cerr = cond(int(fd)) }); err != nil {
			return err
		}
		if cerr != nil || ok {
			return cerr
		}
	}
	return errors.New("never saw " + what)
}

// readBounded reads from s with a read deadline of bound.
func readBounded(t *testing.T, s *Socket, p []byte) (int, error) {
	t.Helper()
	if err := s.SetReadDeadline(time.Now().Add(bound)); err != nil {
		t.Fatal(err)
	}
	return s.Read(p)
}

// waitUpstream does what the proxy does between two requests on a client
// connection: it sends a request on up and waits for the answer, which
// the peer (far) sends only after meanwhile() has run. The goroutine parks
// on up, and the netpoller takes the events of whatever meanwhile() made
// arrive (ahead of the answer's in epoll's ready list) before it wakes.
func waitUpstream(t *testing.T, up, far *net.TCPConn, meanwhile func() error) {
	t.Helper()
	done, exited := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(exited)
		_ = far.SetReadDeadline(time.Now().Add(bound))
		_, err := io.ReadFull(far, make([]byte, 1))
		if err == nil {
			err = meanwhile()
		}
		if err == nil {
			_, err = far.Write([]byte("x"))
		}
		done <- err
	}()
	t.Cleanup(func() { _ = far.Close(); <-exited })
	_ = up.SetDeadline(time.Now().Add(bound))
	if _, err := up.Write([]byte("?")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(up, make([]byte, 1)); err != nil {
		t.Fatalf("waiting for the upstream: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the upstream's side: %v", err)
	}
}

func TestReadFindsBytesThatCameWhileParkedElsewhere(t *testing.T) {
	client, server := pair(t)
	upstream, upstreamFar := pair(t)
	s := socket(t, server)
	buf := make([]byte, 4096)
	if _, err := client.Write([]byte("req1")); err != nil {
		t.Fatal(err)
	}
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req1" {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	// A short read: the socket was empty. The next request (pipelined)
	// comes in its own segment while the goroutine waits on another socket.
	waitUpstream(t, upstream, upstreamFar, func() error {
		if _, err := client.Write([]byte("req2")); err != nil {
			return err
		}
		return queued(server)
	})
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req2" {
		t.Fatalf("Read after waiting elsewhere = %q, %v; want req2 (its arrival's event was already taken)", buf[:n], err)
	}
}

func TestReadFindsFINThatCameWhileParkedElsewhere(t *testing.T) {
	client, server := pair(t)
	upstream, upstreamFar := pair(t)
	s := socket(t, server)
	buf := make([]byte, 4096)
	if _, err := client.Write([]byte("req1")); err != nil {
		t.Fatal(err)
	}
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req1" {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	// The client half-closes (its last request sent) while the goroutine
	// waits on another socket.
	waitUpstream(t, upstream, upstreamFar, func() error {
		if err := client.CloseWrite(); err != nil {
			return err
		}
		return halfClosed(server)
	})
	if n, err := readBounded(t, s, buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after a half-close = %d, %v; want io.EOF", n, err)
	}
	// The half-closed client still reads the answer.
	if _, err := s.Write([]byte("resp")); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(bound))
	if got, err := io.ReadAll(io.LimitReader(client, 4)); err != nil || string(got) != "resp" {
		t.Fatalf("the half-closed client read %q, %v", got, err)
	}
}

func TestReadPipelinedInOneSegment(t *testing.T) {
	client, server := pair(t)
	s := socket(t, server)
	// Both requests in one write: a read the size of the first leaves the
	// second queued (a full read knows nothing of what is left); a larger
	// one takes both, and the next Read waits for the client.
	if _, err := client.Write([]byte("req1req2")); err != nil {
		t.Fatal(err)
	}
	if err := queued(server); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, want := range []string{"req1", "req2"} {
		if n, err := readBounded(t, s, buf[:4]); err != nil || string(buf[:n]) != want {
			t.Fatalf("Read = %q, %v; want %s", buf[:n], err, want)
		}
	}
	if _, err := client.Write([]byte("req3req4")); err != nil {
		t.Fatal(err)
	}
	if err := queued(server); err != nil {
		t.Fatal(err)
	}
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req3req4" {
		t.Fatalf("Read = %q, %v; want both requests", buf[:n], err)
	}
	go func() {
		// Sent only once the client has the answer, as a client that does
		// not pipeline sends.
		got := make([]byte, 4)
		_ = client.SetReadDeadline(time.Now().Add(bound))
		if _, err := io.ReadFull(client, got); err == nil {
			_, _ = client.Write([]byte("req5"))
		}
	}()
	if _, err := s.Write([]byte("resp")); err != nil {
		t.Fatal(err)
	}
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req5" {
		t.Fatalf("Read = %q, %v; want req5, sent after the answer", buf[:n], err)
	}
}

func TestReadDeadlineAfterShortRead(t *testing.T) {
	client, server := pair(t)
	s := socket(t, server)
	buf := make([]byte, 4096)
	if _, err := client.Write([]byte("req1")); err != nil {
		t.Fatal(err)
	}
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req1" {
		t.Fatalf("first Read = %q, %v", buf[:n], err)
	}
	// Nothing more comes: the Read parks and its deadline (earlier than the
	// one set lazily before) ends it.
	if err := s.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read past its deadline: %v; want a timeout", err)
		}
	case <-time.After(bound):
		t.Fatal("a Read after a short read ignored its deadline")
	}
	// The connection still works once the deadline moves on.
	if _, err := client.Write([]byte("req2")); err != nil {
		t.Fatal(err)
	}
	if n, err := readBounded(t, s, buf); err != nil || string(buf[:n]) != "req2" {
		t.Fatalf("Read after the timeout = %q, %v; want req2", buf[:n], err)
	}
}
