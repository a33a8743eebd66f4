package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// The retry buffer of a streamed request body (HTTP/1.1 and HTTP/2 alike),
// like Envoy's: a try reads the body from the downstream as it sends it,
// and the first replayLimit bytes are kept. A failed try is retried only
// while everything it read is still kept; once a body has outgrown the
// buffer, the try that took it is the last.

// replayLimit is how much of a streamed request body is kept so a failed
// try can be sent again; a longer body is not retried once it started.
const replayLimit = 64 << 10

// replayBody reads a streamed request body for the upstream and keeps the
// first replayLimit bytes, so a try that failed can be sent again with the
// same body. Each try reads through its own reader; a later try replays
// what was kept, then goes on with the live body.
type replayBody struct {
	mu       sync.Mutex
	src      io.ReadCloser
	keep     bool
	buf      []byte
	overflow bool // more than replayLimit was read: no replay
	eof      error
	cur      *replayReader
	read     atomic.Int64 // bytes read from the downstream
	// mirror, when set, gets a copy of the body as it is read from the
	// downstream, and is sent once it ended (guarded by mu).
	mirror *mirrorCopy
}

func newReplayBody(src io.ReadCloser, keep bool) *replayBody {
	return &replayBody{src: src, keep: keep}
}

// replayable reports whether a new try can send the whole body again.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keep && !b.overflow
}

// untouched reports whether no body byte was read yet, so a try that
// failed before sending any can be sent again whether or not the body is
// kept.
func (b *replayBody) untouched() bool { return b.read.Load() == 0 }

// reader starts a try's view of the body; the previous one stops reading.
func (b *replayBody) reader() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != nil {
		b.cur.closed = true
	}
	b.cur = &replayReader{b: b}
	return b.cur
}

type replayReader struct {
	b      *replayBody
	pos    int
	closed bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	if r.closed {
		b.mu.Unlock()
		return 0, errors.New("request body: superseded by a retry")
	}
	if r.pos < len(b.buf) {
		n := copy(p, b.buf[r.pos:])
		r.pos += n
		b.mu.Unlock()
		return n, nil
	}
	if b.eof != nil {
		b.mu.Unlock()
		return 0, b.eof
	}
	b.mu.Unlock()
	// Read the live body outside the lock: it may wait for the client.
	n, err := b.src.Read(p)
	b.read.Add(int64(n))
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > 0 && b.keep && !b.overflow {
		if len(b.buf)+n <= replayLimit {
			b.buf = append(b.buf, p[:n]...)
			r.pos += n
		} else {
			b.overflow = true
		}
	}
	if m := b.mirror; m != nil {
		complete := n > 0 && m.add(p[:n])
		switch {
		case err == io.EOF || (err == nil && complete):
			b.mirror = nil
			m.bodyEnded()
		case err != nil:
			b.mirror = nil
			m.drop()
		}
	}
	if err != nil {
		b.eof = err
	}
	if r.closed && n > 0 && (b.overflow || !b.keep) {
		// A superseded try took bytes nobody kept: the body is broken.
		b.overflow = true
		return 0, errors.New("request body: superseded by a retry")
	}
	return n, err
}

func (r *replayReader) Close() error { return nil }

// bodySplicer is what the downstream body offers for splicing
// (cluster.BodySplicer; h1RequestBody).
type bodySplicer interface {
	BodySocket() (*net.TCPConn, int64, bool)
	BodySpliced(n int64, err error) error
	BodyTick()
	BodyHeld() int64
}

// BodySocket offers the live body's next bytes for splicing, once nothing
// needs to see them: this try is the live one, the retry buffer keeps
// nothing more (it overflowed, or the request is not retried) and was
// replayed, and no mirror takes a copy.
func (r *replayReader) BodySocket() (*net.TCPConn, int64, bool) {
	b := r.b
	sp, ok := b.src.(bodySplicer)
	if !ok {
		return nil, 0, false
	}
	b.mu.Lock()
	free := !r.closed && b.eof == nil && b.mirror == nil && r.pos >= len(b.buf) && (!b.keep || b.overflow)
	b.mu.Unlock()
	if !free {
		return nil, 0, false
	}
	return sp.BodySocket()
}

// BodyHeld is what the live body holds in memory, once this try reads it
// live (0 while it replays, or when the source cannot tell).
func (r *replayReader) BodyHeld() int64 {
	b := r.b
	sp, ok := b.src.(bodySplicer)
	if !ok {
		return 0
	}
	b.mu.Lock()
	live := !r.closed && b.eof == nil && r.pos >= len(b.buf)
	b.mu.Unlock()
	if !live {
		return 0
	}
	return sp.BodyHeld()
}

// BodySpliced counts what was spliced as read from the downstream.
func (r *replayReader) BodySpliced(n int64, err error) error {
	b := r.b
	b.read.Add(n)
	berr := b.src.(bodySplicer).BodySpliced(n, err)
	if berr != nil {
		b.mu.Lock()
		b.eof = berr
		b.mu.Unlock()
	}
	return berr
}

// BodyTick pushes the downstream's read deadline ahead.
func (r *replayReader) BodyTick() { r.b.src.(bodySplicer).BodyTick() }

// Abort cuts short a Read that waits for the client, when the body's
// source can (an HTTP/1.1 request body): the transport that reads it
// gave up on the body.
func (r *replayReader) Abort() {
	if a, ok := r.b.src.(interface{ Abort() }); ok {
		a.Abort()
	}
}
