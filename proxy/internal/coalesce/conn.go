// Package coalesce batches what HTTP/2 codecs read and write on a
// connection into fewer syscalls.
//
// golang.org/x/net/http2's server reads each frame with two read(2) calls,
// its 9-byte header and then its payload; a Conn reads through a 4 KiB
// buffer, so the frames that arrived together come in one call (a read
// larger than the buffer goes straight to the socket).
//
// golang.org/x/net/http2's server and net/http's HTTP/2 client flush their
// buffer after nearly every frame: a gRPC answer's HEADERS, DATA and
// trailers, and a request's HEADERS and DATA, leave in separate write(2)
// calls, and the streams of one connection never share one. A Conn takes
// those writes into a buffer and returns at once; one drain goroutine per
// busy connection first lets every runnable goroutine run (runtime.Gosched:
// the other streams' handlers, the codec's loop, add their frames), then
// writes all that piled up in one syscall, and repeats until the buffer is
// empty. Ordering is kept: bytes leave in the order they were written.
//
// The package owns syscall batching only: it parses nothing,
// and adds no timer (a lone write leaves as soon as the scheduler gets to
// the drain goroutine, not after a delay).
package coalesce

import (
	"bufio"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"time"
)

// maxPending is how much may wait unwritten before a Write blocks until
// the drain catches up, so a peer that stops reading holds bounded memory.
const maxPending = 256 << 10

// closeWait bounds how long Close lets pending bytes (a GOAWAY, the end of
// an answer) drain before it closes the socket anyway.
const closeWait = time.Second

// Conn is a net.Conn whose reads are buffered and whose writes are
// coalesced. The read deadline passes through untouched.
type Conn struct {
	net.Conn
	r *bufio.Reader
	// timeout bounds each syscall of the drain (no progress for that
	// long fails the connection); 0: none.
	timeout time.Duration

	mu       sync.Mutex
	progress *sync.Cond // a drain step ended (Write waits on it when full)
	buf      []byte     // pending bytes, in order
	spare    []byte     // the previous buffer, reused
	err      error      // the first write error: every later Write fails with it
	closed   bool
	draining chan struct{} // non-nil while a drain goroutine runs; closed at its end
	// abort is a write deadline in the past set by the caller: the
	// pending write is cut and the connection fails.
	abort bool
}

// tlsConn keeps a TLS connection's state visible through the wrapper
// (x/net/http2 looks for ConnectionState to check the TLS version and
// cipher).
type tlsConn struct{ *Conn }

func (c tlsConn) ConnectionState() tls.ConnectionState {
	return c.Conn.Conn.(interface{ ConnectionState() tls.ConnectionState }).ConnectionState()
}

// Wrap returns c with its writes coalesced. timeout bounds every syscall
// the drain makes (a peer that reads nothing for that long fails the
// connection, as the codecs' own write timeouts would); 0 means none.
func Wrap(c net.Conn, timeout time.Duration) net.Conn {
	cc := newConn(c, timeout)
	if _, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tlsConn{cc}
	}
	return cc
}

func newConn(c net.Conn, timeout time.Duration) *Conn {
	cc := &Conn{Conn: c, r: bufio.NewReaderSize(c, readBuffer), timeout: timeout}
	cc.progress = sync.NewCond(&cc.mu)
	return cc
}

// readBuffer is the read buffer's size: net/http's HTTP/2 client reads
// through a 4 KiB bufio.Reader of its own, whose reads then bypass this one.
const readBuffer = 4 << 10

// Read reads from the buffer, refilled with one syscall when empty.
func (c *Conn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Write queues b and returns; it blocks only while maxPending bytes wait.
// A failure of an earlier drain is returned here.
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.buf) >= maxPending {
		c.progress.Wait()
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, b...)
	if c.draining == nil {
		c.draining = make(chan struct{})
		go c.drain(c.draining)
	}
	return len(b), nil
}

// drain writes what is pending until nothing is, one syscall per batch.
func (c *Conn) drain(done chan struct{}) {
	defer close(done)
	// Let the goroutines that are about to write (the rest of this
	// answer, other streams' frames) do so before the syscall.
	runtime.Gosched()
	c.mu.Lock()
	for len(c.buf) > 0 && c.err == nil {
		b := c.buf
		c.buf = c.spare[:0]
		c.spare = nil
		c.mu.Unlock()
		if c.timeout > 0 {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		}
		_, err := c.Conn.Write(b)
		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
		}
		if cap(b) <= maxPending {
			c.spare = b[:0]
		}
		c.progress.Broadcast()
		if len(c.buf) > 0 && c.err == nil {
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
	}
	if c.err != nil {
		c.buf = c.buf[:0]
	}
	c.draining = nil
	c.progress.Broadcast()
	c.mu.Unlock()
}

// Flushed waits until every byte written so far has been handed to the
// socket (or the connection failed) and returns the write error, if any.
func (c *Conn) Flushed() error {
	c.mu.Lock()
	for c.draining != nil && c.err == nil {
		c.progress.Wait()
	}
	defer c.mu.Unlock()
	return c.err
}

// SetDeadline sets the read deadline, and the write deadline as
// SetWriteDeadline does.
func (c *Conn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline: the drain applies the Conn's own timeout to each
// syscall, since a caller's deadline around a Write that only queues says
// nothing about when the bytes leave. A deadline already past is the
// caller cutting the connection's writes: it reaches the socket at once.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() || time.Until(t) > 0 {
		return nil
	}
	c.mu.Lock()
	c.abort = true
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// Close lets pending bytes drain for up to a second, then closes the
// socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	done, abort := c.draining, c.abort
	c.progress.Broadcast()
	c.mu.Unlock()
	if done != nil && !abort {
		t := time.NewTimer(closeWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	return c.Conn.Close()
}

// CloseWrite half-closes the connection after what is pending drained.
func (c *Conn) CloseWrite() error {
	_ = c.Flushed()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
