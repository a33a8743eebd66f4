package coalesce

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// pair is a loopback TCP connection: the wrapped writing side and the
// plain reading side.
func pair(t *testing.T, timeout time.Duration) (net.Conn, net.Conn) {
	t.Helper()
	c, peer := testserver.TCPPair(t)
	w := Wrap(c, timeout)
	t.Cleanup(func() { _ = w.Close(); _ = peer.Close() })
	return w, peer
}

func TestWritesArriveInOrder(t *testing.T) {
	w, peer := pair(t, 0)
	var want bytes.Buffer
	var wg sync.WaitGroup
	var mu sync.Mutex // writers take turns; the order they took is the order expected
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				b := bytes.Repeat([]byte{byte('a' + g)}, 1+i%300)
				mu.Lock()
				want.Write(b)
				_, err := w.Write(b)
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if err := w.(*Conn).Flushed(); err != nil {
		t.Fatal(err)
	}
	if err := w.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, want %d, or out of order", len(got), want.Len())
	}
}

func TestCloseDrainsPending(t *testing.T) {
	w, peer := pair(t, 0)
	msg := bytes.Repeat([]byte("goaway"), 1000)
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(peer)
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes after Close, want %d", len(got), len(msg))
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// A peer that reads nothing: writes block once maxPending bytes wait, and
// the drain's timeout fails the connection instead of holding it for ever.
func TestStuckPeerFailsWithinTimeout(t *testing.T) {
	w, _ := pair(t, 200*time.Millisecond)
	chunk := make([]byte, 64<<10)
	var err error
	for i := 0; i < 100000 && err == nil; i++ { // far more than socket buffers hold
		_, err = w.Write(chunk)
	}
	if err == nil {
		t.Fatal("writes to a peer that reads nothing never failed")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	c := w.(*Conn)
	c.mu.Lock()
	pending := len(c.buf)
	c.mu.Unlock()
	if pending > maxPending {
		t.Fatalf("%d bytes pending, want at most %d", pending, maxPending)
	}
}

// Reads through the buffer return the bytes in order, small reads and
// reads larger than the buffer alike.
func TestReadsArriveInOrder(t *testing.T) {
	w, peer := pair(t, 0)
	want := make([]byte, 100000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() { _, _ = peer.Write(want); _ = peer.Close() }()
	var got []byte
	for _, size := range []int{9, 1, 20000, 3, 9000} {
		buf := make([]byte, size)
		n, err := io.ReadFull(w, buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	rest, err := io.ReadAll(w)
	if err != nil {
		t.Fatal(err)
	}
	if got = append(got, rest...); !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d, or out of order", len(got), len(want))
	}
}
