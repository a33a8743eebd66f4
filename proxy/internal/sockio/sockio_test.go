package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// pair returns both ends of a loopback TCP connection, closed at cleanup.
func pair(t *testing.T) (*net.TCPConn, *net.TCPConn) { return testserver.TCPPair(t) }

func socket(t *testing.T, c *net.TCPConn) *Socket {
	t.Helper()
	if !Available {
		t.Skip("sockio is Linux only")
	}
	s := New(c)
	if s == nil {
		t.Fatal("New returned nil for a TCP connection")
	}
	return s
}

func TestReadWriteLikeTCPConn(t *testing.T) {
	a, b := pair(t)
	s := socket(t, a)
	// A read that must wait: the peer writes after the read began.
	go func() {
		time.Sleep(10 * time.Millisecond)
		_, _ = b.Write([]byte("hello"))
	}()
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	if n, err := s.Write([]byte("world")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "world" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	// The peer closes: EOF, as net.TCPConn reports it.
	_ = b.Close()
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want io.EOF", n, err)
	}
}

func TestWriteWaitsForRoom(t *testing.T) {
	a, b := pair(t)
	s := socket(t, a)
	// 16 MiB: more than the two sockets' buffers hold, so the write
	// waits for the reader.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
		done <- got
	}()
	if n, err := s.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
	}
	if got := <-done; !bytes.Equal(got, big) {
		t.Fatalf("peer read %d bytes, not what was written", len(got))
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	a, _ := pair(t)
	s := socket(t, a)
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := s.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v; want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read error %v is not a read OpError", err)
	}
	_ = a.SetReadDeadline(time.Time{})
	_ = a.Close()
	if _, err := s.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read of a closed connection: %v; want net.ErrClosed", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write to a closed connection: %v; want net.ErrClosed", err)
	}
}

func TestReadAndWriteAllocateNothing(t *testing.T) {
	a, b := pair(t)
	s := socket(t, a)
	msg, buf := []byte("ping"), make([]byte, 4)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip; want 0", allocs)
	}
}

func TestLazyDeadlines(t *testing.T) {
	a, b := pair(t)
	s := socket(t, a)
	buf := make([]byte, 8)
	// A later deadline is kept lazily: the socket's earlier one fires,
	// and Read goes on to the caller's.
	start := time.Now()
	if err := s.SetReadDeadline(start.Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReadDeadline(start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = b.Write([]byte("late"))
	}()
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read = %q, %v; want the bytes sent after the first deadline", buf[:n], err)
	}
	// No deadline at all is later than any: the same.
	if err := s.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = b.Write([]byte("later"))
	}()
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "later" {
		t.Fatalf("Read = %q, %v; want the bytes after a cleared deadline", buf[:n], err)
	}
	// The last deadline set is the one that stops a Read.
	_ = s.SetReadDeadline(time.Now().Add(time.Hour))
	_ = s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past an earlier deadline: %v; want a timeout", err)
	}
	// A deadline in the past stops a Read waiting in another goroutine at once.
	_ = s.SetReadDeadline(time.Now().Add(time.Hour))
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = s.SetReadDeadline(time.Now())
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("interrupted Read: %v; want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a deadline set in the past did not stop the waiting Read")
	}
}

func TestSettleSetsDeadlinesOnTheConnection(t *testing.T) {
	a, _ := pair(t)
	s := socket(t, a)
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_ = s.SetReadDeadline(time.Now().Add(time.Hour)) // kept lazily
	s.Settle()
	// A read on the connection itself now waits for the caller's hour, not
	// the earlier deadline: it is still waiting when the earlier one passed.
	errc := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("the connection's own Read ended with %v at a deadline no caller wants", err)
	default:
	}
	// From now on a deadline is set at once, later or not.
	_ = s.SetReadDeadline(time.Now())
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v; want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a deadline set after Settle did not reach the connection")
	}
}
