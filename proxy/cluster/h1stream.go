package cluster

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Streamed HTTP/1.1 responses. DoStream sends a request over the
// endpoint's fasthttp pool like Do, but returns as soon as the response
// headers are read: the body is read as the caller asks for it, through
// the pooled connection, which goes back to the pool (or is closed) when
// the body is closed. fasthttp's own Response.StreamBody allocates a
// wrapper and closures per response; this path allocates nothing once
// warm, so the proxy can stream every response.

// ResponseBody is a response body still on its upstream connection.
// Read returns io.EOF at the body's end (the trailers of a chunked body
// are then in the response header) and any other error when the upstream
// broke, was silent for the idle timeout, or sent a malformed body. Close
// must be called exactly once: it returns the connection to the pool when
// the body was read whole and the connection may be reused, and closes it
// otherwise.
type ResponseBody interface {
	Read(p []byte) (int, error)
	Close() error
	// ContentLength is the body's declared length, -1 when it has none
	// (chunked, or until the upstream closes).
	ContentLength() int
}

// ErrBodyIdle is the error of a streamed body's Read when the upstream sent
// nothing for the idle timeout.
var ErrBodyIdle = errors.New("upstream response body: idle timeout")

// readTimedOut reports whether a body's read failed on its read deadline,
// also when a parser wrapped the error in one of its own (fasthttp's
// trailer reader does).
func readTimedOut(err error) bool {
	return isTimeout(err) || errors.Is(err, os.ErrDeadlineExceeded)
}

// errBadChunk is a malformed chunked body. (fasthttp.ErrBrokenChunk{}
// has a nil error inside: its Error panicked when fasthttp's server
// logged why a streamed body failed, taking the process down.)
var errBadChunk = errors.New("upstream response body: malformed chunk")

// conn is what fasthttp's pooled connection (an unexported type) offers.
type conn interface{ Conn() net.Conn }

// DoStream sends req like Do, leaves the status and headers in resp and
// returns the body still to read (nil when there is none or it was
// already read whole: it then is in resp). deadline bounds the wait for
// the response headers; then the body may be silent for the cluster's
// idle_timeout at most between reads. resp gets no default Content-Type.
// The request counts as active on the endpoint until the body is closed.
// On an HTTP/2 cluster the answer streams too, from net/http's transport.
func (e *Endpoint) DoStream(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) (ResponseBody, error) {
	return e.DoStreamBody(req, nil, 0, resp, deadline)
}

// DoTry is one try of the route's retry policy: DoStreamBody (body nil:
// DoStream) with its per-try timeout. deadline (the route's) bounds the
// whole try, the wait for a connection and its dial included (each dial
// bounded by connect_timeout too); perTry (0: none) bounds the try from
// when it has a usable connection and its request body, if it streams,
// has been sent whole (pertry.go).
func (e *Endpoint) DoTry(req *fasthttp.Request, body io.Reader, size int, resp *fasthttp.Response, deadline time.Time, perTry time.Duration) (ResponseBody, error) {
	c := e.c
	if err := e.admit(); err != nil {
		return nil, err
	}
	if c.closed.Load() {
		req.SetConnectionClose()
	}
	if c.UsesHTTP2(false) {
		rb, err := e.roundTripStream(req, body, size, resp, deadline, perTry)
		if rb == nil {
			e.done()
		}
		return rb, err
	}
	c.setScheme(req)
	req.URI().DisablePathNormalizing = true
	rb, err := doH1(e, e.client, (*fasthttp.HostClient).AcquireConn, (*fasthttp.HostClient).CloseConn,
		(*fasthttp.HostClient).ReleaseConn, req, body, size, resp, deadline, perTry, c.s.IdleTimeout, false)
	if rb == nil {
		e.done()
	}
	return rb, err
}

// DoStreamBody is DoStream with the request body streamed from body
// instead of req's: size bytes (Content-Length), or chunked when size is
// -1, each read flushed upstream as it comes. req's own body is ignored
// when body is not nil. The whole body is sent before the answer is read
// (an upstream that answers early sees its answer only once the body has
// gone). A streamed body is read once: a pooled connection found closed
// before the body was touched is passed over, but one that breaks later is
// not tried again here (the caller's retry policy decides, with what it
// kept of the body; pooledconn.go).
func (e *Endpoint) DoStreamBody(req *fasthttp.Request, body io.Reader, size int, resp *fasthttp.Response, deadline time.Time) (ResponseBody, error) {
	return e.DoTry(req, body, size, resp, deadline, 0)
}

// done ends a request's activity on the endpoint (see admit): pending is
// the number of requests beyond the pool's capacity, and drops as the
// request that pushed it over leaves.
func (e *Endpoint) done() {
	if e.active.Add(-1) >= int64(e.c.s.MaxConnsPerEndpoint) {
		e.c.breakers.pending.Add(-1)
	}
}

// doH1 is DoStream's and Do's exchange on one pooled connection. whole
// (Do) reads the answer's body into resp under the deadline, and frees
// the connection. deadline (zero: none) bounds it all; perTry (0: none)
// bounds it from when it has its connection, and a streamed body has gone
// (pertry.go). It is generic only to hold fasthttp's pooled connection,
// whose type is unexported: the type parameter is inferred from the
// HostClient's methods.
func doH1[C conn](e *Endpoint, hc *fasthttp.HostClient,
	acquire func(*fasthttp.HostClient, time.Duration, bool) (C, error),
	closeConn, releaseConn func(*fasthttp.HostClient, C),
	req *fasthttp.Request, body io.Reader, size int, resp *fasthttp.Response, deadline time.Time, perTry time.Duration,
	idle time.Duration, whole bool) (ResponseBody, error) {
	retried := false
	var tryEnd time.Time // the per-try bound, once it started
	for {
		d := earlier(deadline, tryEnd) // this connection's deadline
		var wait time.Duration
		if !d.IsZero() {
			if wait = time.Until(d); wait <= 0 {
				return nil, fasthttp.ErrTimeout
			}
		}
		// The wait for a connection and its dial are bounded by the
		// deadline (and each dial by connect_timeout), not the per-try
		// bound, which has not started.
		cc, err := acquire(hc, wait, req.ConnectionClose())
		if err != nil {
			return nil, err
		}
		cn := cc.Conn()
		reused, usable := takeConn(cn)
		if !usable {
			// Closed by the upstream while idle: nothing was sent, take
			// the next connection (pooledconn.go).
			closeConn(hc, cc)
			e.c.stats.StaleConnsClosed.Add(1)
			continue
		}
		if tc, ok := cn.(*tls.Conn); ok && !reused {
			// A new TLS connection is handshaken here, as the dial does
			// for the other transports, not at the request's first
			// write: its failure is the endpoint's connect failure (503,
			// retried elsewhere at once), and the per-try bound below
			// starts after it. One clock read per new connection.
			if err := e.handshake(tc, time.Now(), d); err != nil {
				closeConn(hc, cc)
				return nil, err
			}
		}
		if perTry > 0 && tryEnd.IsZero() && body == nil {
			// The try has its connection: the per-try bound starts now
			// (after a streamed body, below, when there is one).
			tryEnd = time.Now().Add(perTry)
			d = earlier(d, tryEnd)
		}
		bw := hc.AcquireWriter(cn)
		if body != nil {
			// A streamed body comes at the client's pace: the wait for
			// the answer gets what was left of the deadline when the body
			// began (as Envoy's route timeout starts once the request is
			// complete), and each write may take the idle timeout. The
			// per-try bound starts once the body has gone.
			left := wait
			_ = cn.SetDeadline(time.Time{})
			err = writeStreamed(bw, cn, idle, req, body, size)
			if !d.IsZero() || perTry > 0 {
				now := time.Now()
				if !d.IsZero() {
					d = now.Add(left)
				}
				if perTry > 0 {
					tryEnd = now.Add(perTry)
					d = earlier(d, tryEnd)
				}
			}
		} else {
			_ = cn.SetDeadline(d) // zero clears a previous one
			err = req.Write(bw)
		}
		if err == nil {
			// The request's last write waits for the answer (answerwait.go).
			cc, _ := cn.(*countedConn)
			armed := cc != nil && body == nil && cc.armAnswerWait()
			err = bw.Flush()
			if armed {
				cc.disarmAnswerWait()
			}
		}
		hc.ReleaseWriter(bw)
		if body != nil {
			_ = cn.SetDeadline(d)
		}
		early := err != nil && body != nil && !isBodyError(err)
		if early {
			// The upstream stopped taking a streamed body: it may have
			// answered early (a 401 or 413 before reading an upload), an
			// answer Envoy passes on too. Read it; the connection is done.
			err = nil
		}
		wrote := err == nil
		resp.Reset()
		resp.Header.SetNoDefaultContentType(true) // forward what the upstream sent
		resp.Header.DisableNormalizing()
		var br *bufio.Reader
		if err == nil {
			br = hc.AcquireReader(cn)
			// Headers only (1xx skipped); the body is ours to read.
			resp.SkipBody = true
			err = resp.ReadLimitBody(br, 0)
			resp.SkipBody = false
		}
		if err != nil {
			if br != nil {
				hc.ReleaseReader(br)
			}
			closeConn(hc, cc)
			if isTimeout(err) {
				return nil, fasthttp.ErrTimeout
			}
			// A reused connection the upstream closed as the request went:
			// nothing of the answer came (the write failed, or the first
			// byte's read did: fasthttp reports that as io.EOF). A
			// replayable request goes once more (pooledconn.go).
			if reused && !retried && (!wrote || err == io.EOF) && replayable(req, body != nil) {
				retried = true
				e.c.stats.PooledConnRetries.Add(1)
				continue
			}
			if err == io.EOF {
				err = fasthttp.ErrConnectionClosed
			}
			return nil, err
		}
		keep := !early && !req.ConnectionClose() && !resp.Header.ConnectionClose()
		cl := resp.Header.ContentLength()
		st := resp.StatusCode()
		if req.Header.IsHead() || st < 200 || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified {
			cl = 0
			resp.SkipBody = req.Header.IsHead()
		}
		if cl >= 0 && br.Buffered() >= cl {
			// The whole body came with the headers: take it now and free
			// the connection (the common small answer; nothing to stream).
			if cl > 0 {
				b, _ := br.Peek(cl)
				resp.SetBody(b)
				_, _ = br.Discard(cl)
			}
			hc.ReleaseReader(br)
			if keep {
				pooled(cn)
				releaseConn(hc, cc)
			} else {
				closeConn(hc, cc)
			}
			return nil, nil
		}
		if cl == -2 {
			keep = false // the body ends when the upstream closes
		}
		if whole {
			// Do: the rest of the body too, under the deadline still set.
			err = readWholeBody(resp, br, cl)
			hc.ReleaseReader(br)
			if err != nil || !keep {
				closeConn(hc, cc)
			} else {
				pooled(cn)
				releaseConn(hc, cc)
			}
			if isTimeout(err) {
				err = fasthttp.ErrTimeout
			}
			return nil, err
		}
		b, _ := h1BodyPool.Get().(*h1Body[C])
		if b == nil {
			b = &h1Body[C]{}
		}
		*b = h1Body[C]{e: e, hc: hc, cc: cc, br: br, h: &resp.Header, closeConn: closeConn, releaseConn: releaseConn,
			left: cl, cl: cl, keep: keep, idle: idle, head: b.head[:0], vec: b.vec[:0]}
		if cl == -1 {
			b.chunked, b.left = true, 0
		}
		// The route deadline bounded the headers; the body has its idle
		// bound, set before each read of the socket: by the counted
		// connection under cn (TLS or not), since one read of the body
		// may take several (a size line, a CRLF, the trailers), or by
		// pushRead where there is none.
		_ = cn.SetReadDeadline(time.Time{})
		if b.paced = countedUnder(cn); b.paced != nil {
			b.paced.paceReads(idle)
		}
		return b, nil
	}
}

// earlier is the earlier of two deadlines (zero: none).
func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// handshake completes the TLS handshake of a connection the pool just
// dialed (fasthttp leaves it to the request's first write), bounded by
// connect_timeout and deadline (zero: none), so that it is part of getting
// the connection: its failure is the endpoint's connect failure, as a
// failed dial is.
func (e *Endpoint) handshake(tc *tls.Conn, now, deadline time.Time) error {
	_ = tc.SetDeadline(earlier(now.Add(e.c.s.ConnectTimeout), deadline))
	if err := tc.Handshake(); err != nil {
		return &DialError{Addr: e.addr, Err: fmt.Errorf("tls: %w", err)}
	}
	return nil
}

// readWholeBody reads an answer's body of declared length cl (-1
// chunked, then its trailers; -2 until the upstream closes) into resp, at
// most maxResponseBodyBytes (more is fasthttp.ErrBodyTooLarge).
func readWholeBody(resp *fasthttp.Response, br *bufio.Reader, cl int) error {
	if err := resp.ReadBody(br, maxResponseBodyBytes); err != nil {
		return err
	}
	if cl != -1 {
		return nil
	}
	if err := resp.Header.ReadTrailer(br); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// writeStreamed writes req with its body read from body: size bytes, or
// chunked (size -1). The headers wait for the first body bytes (filters
// that buffer a body may still change them until it is released); then,
// before each read of body, whatever is buffered is flushed, so the
// upstream has every byte the client sent before weft waits for the next.
func writeStreamed(bw *bufio.Writer, cn net.Conn, idle time.Duration, req *fasthttp.Request, body io.Reader, size int) error {
	bp := firstChunkPool.Get().(*[]byte)
	defer firstChunkPool.Put(bp)
	var head [16]byte
	fr := flushReader{bw: bw, cn: cn, idle: idle, r: body, size: int64(size), head: head[:0]}
	var n int
	var err error
	for n == 0 && err == nil {
		n, err = body.Read(*bp)
	}
	if err != nil && err != io.EOF {
		return &BodyError{Err: err}
	}
	fr.first, fr.firstErr = (*bp)[:n], err
	req.SetBodyStream(&fr, size)
	err = req.Write(bw)
	if fr.err != nil {
		return &BodyError{Err: fr.err}
	}
	return err
}

var firstChunkPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// flushReader hands out a body's first chunk, then reads the rest,
// flushing the writer before each read.
type flushReader struct {
	bw       *bufio.Writer
	cn       net.Conn
	idle     time.Duration
	r        io.Reader
	first    []byte
	firstErr error // what the read of the first chunk returned with it
	err      error // the body's own error, told apart from the upstream's
	size     int64 // the body's length, -1 chunked

	head []byte    // a chunk's size line
	arr  [3][]byte // the backing of vec, so that a write allocates nothing
	vec  net.Buffers

	pipe kpipe       // for a spliced body (spliceNext), opened at its first splice
	tick BodySplicer // the body being spliced, during a splice
	last time.Time   // when the upstream's write deadline was last pushed
}

// SupportsBodyWriteTo makes fasthttp copy the body with WriteTo, not
// through bufio.Writer.ReadFrom: Read flushes that writer, which must not
// happen while ReadFrom reads into its buffer.
func (f *flushReader) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the body to w (which writes to f.bw) through Read. Once
// the writer holds nothing, a chunk goes straight to a plain TCP upstream
// in one write (writev of its size line, data and CRLF): through w, a
// 64 KiB chunk took three writes (the writer's 4 KiB buffer, the rest,
// then the CRLF at the flush). And when the body can hand its next bytes
// over on the client's socket (a BodySplicer), they are spliced socket to
// socket instead of read and written.
func (f *flushReader) WriteTo(w io.Writer) (int64, error) {
	bp := firstChunkPool.Get().(*[]byte)
	defer firstChunkPool.Put(bp)
	defer f.pipe.close()
	tc := upstreamTCP(f.cn)
	sp, _ := f.r.(BodySplicer)
	if tc == nil || !spliceOK {
		sp = nil
	}
	var total int64
	for {
		if sp != nil && len(f.first) == 0 && f.firstErr == nil {
			n, done, err := f.spliceNext(sp, tc, total)
			total += n
			if err != nil {
				return total, err
			}
			if done {
				continue // more may follow the same way
			}
		}
		n, err := f.Read(*bp)
		if sp != nil && f.size < 0 && err == nil && n > 0 && f.bw.Buffered() == 0 {
			// Pieces of a chunked body that are in memory already go up
			// as one chunk: the client's chunks are often smaller than
			// what one read of its socket brings.
			n, err = f.gather(sp, *bp, n)
		}
		if n > 0 {
			p := (*bp)[:n]
			if f.size >= 0 && total+int64(n) > f.size {
				// More than the declared length: none of it goes, or the
				// upstream would read it as the next request. (fasthttp's
				// own writer cuts an overrun too, but counts only what went
				// through it, not the direct writes.)
				f.err = errBodyTooLong
				return total, f.err
			}
			var werr error
			if tc != nil && f.bw.Buffered() == 0 {
				werr = f.writeDirect(tc, p)
			} else {
				// Through the writer (TLS, or behind what it holds): a
				// large p goes straight on from it, so the idle bound is
				// set here, not only at Read's flush.
				if f.idle > 0 {
					_ = f.cn.SetWriteDeadline(time.Now().Add(f.idle))
				}
				_, werr = w.Write(p)
			}
			if werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// gather reads on into buf[n:] while the body has bytes in memory, and
// returns how much buf now holds (and the last read's error).
func (f *flushReader) gather(sp BodySplicer, buf []byte, n int) (int, error) {
	for n < len(buf) {
		held := sp.BodyHeld()
		if held <= 0 {
			return n, nil
		}
		k, err := f.r.Read(buf[n:min(len(buf), n+int(min(held, int64(len(buf)))))])
		if err != nil && err != io.EOF {
			f.err = err
		}
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// BodySplicer is a streamed request body whose next bytes can be moved
// from the client's socket to the upstream's in the kernel, because
// nothing needs to see them: no filter, no mirror, no retry that could
// replay them.
type BodySplicer interface {
	// BodySocket returns the client socket the body's next n bytes are
	// on, unread, with nothing of the body held before them; ok is false
	// when they cannot be spliced now (the caller then reads the body).
	BodySocket() (src *net.TCPConn, n int64, ok bool)
	// BodySpliced records that n bytes were taken from src around the
	// reader; err is why the splice stopped on src's side (nil if it did
	// not). It returns the body's error, if it now has one (a read that
	// failed, a body over its limit).
	BodySpliced(n int64, err error) error
	// BodyTick is called before each splice step: it pushes the client
	// socket's read deadline ahead.
	BodyTick()
	// BodyHeld is how many of the body's next bytes are in memory already
	// (0 when unknown): a Read of up to that many does not wait.
	BodyHeld() int64
}

// uploadSpliceMin is the smallest stretch of a request body spliced: a
// Content-Length rest or a chunk's data. Below it the pipe's two calls
// cost more than the copies they save.
const uploadSpliceMin = 16 << 10

// spliceNext splices the body's next stretch to the upstream, when it
// offers one: as it is for a Content-Length body, as one chunk of the
// same size for a chunked one. done reports whether it did.
func (f *flushReader) spliceNext(sp BodySplicer, tc *net.TCPConn, total int64) (n int64, done bool, err error) {
	src, k, ok := sp.BodySocket()
	if f.size >= 0 {
		k = min(k, f.size-total)
	}
	if !ok || k < uploadSpliceMin {
		return 0, false, nil
	}
	if !f.pipe.open {
		if err := f.pipe.openPipe(src, tc); err != nil {
			return 0, false, nil // no pipe: copy as before
		}
	}
	if f.bw.Buffered() > 0 {
		// The headers (and the first chunk) go first.
		if f.idle > 0 {
			_ = f.cn.SetWriteDeadline(time.Now().Add(f.idle))
		}
		if err := f.bw.Flush(); err != nil {
			return 0, false, err
		}
	}
	if f.size < 0 {
		f.head = strconv.AppendInt(f.head[:0], k, 16)
		f.head = append(f.head, '\r', '\n')
		if err := f.writeUp(tc, f.head); err != nil {
			return 0, false, err
		}
	}
	f.tick = sp
	in, out, err := f.pipe.move(src, tc, k, f.stepUpload)
	f.tick = nil
	if berr := sp.BodySpliced(in, readSideErr(err)); berr != nil {
		f.err = berr
		return out, false, berr
	}
	if err != nil {
		var we *WriteError
		if errors.As(err, &we) {
			err = we.Err // the upstream's
		}
		return out, false, err
	}
	if f.size < 0 {
		if err := f.writeUp(tc, crlf); err != nil {
			return out, false, err
		}
	}
	return out, true, nil
}

// stepUpload pushes both deadlines ahead before a splice step.
func (f *flushReader) stepUpload() {
	f.tick.BodyTick()
	if f.idle > 0 {
		if now := time.Now(); now.Sub(f.last) > f.idle/10 {
			f.last = now
			_ = f.cn.SetWriteDeadline(now.Add(f.idle))
		}
	}
}

// writeUp writes p to the upstream, under the idle bound.
func (f *flushReader) writeUp(tc *net.TCPConn, p []byte) error {
	if f.idle > 0 {
		_ = tc.SetWriteDeadline(time.Now().Add(f.idle))
	}
	_, err := tc.Write(p)
	return err
}

// readSideErr is err when it came from the splice's source (the client),
// nil when it was the destination's or there was none.
func readSideErr(err error) error {
	if err == nil || IsWriteError(err) {
		return nil
	}
	return err
}

// writeDirect writes p to the upstream as the next piece of the body:
// a chunk when the body is chunked.
func (f *flushReader) writeDirect(tc *net.TCPConn, p []byte) error {
	if f.idle > 0 {
		_ = tc.SetWriteDeadline(time.Now().Add(f.idle))
	}
	if f.size >= 0 {
		_, err := tc.Write(p)
		return err
	}
	f.head = strconv.AppendInt(f.head[:0], int64(len(p)), 16)
	f.head = append(f.head, '\r', '\n')
	f.arr = [3][]byte{f.head, p, crlf}
	f.vec = f.arr[:]
	_, err := f.vec.WriteTo(tc)
	return err
}

var crlf = []byte("\r\n")

func (f *flushReader) Read(p []byte) (int, error) {
	if len(f.first) > 0 {
		n := copy(p, f.first)
		f.first = f.first[n:]
		return n, nil
	}
	if f.firstErr != nil {
		return 0, f.firstErr
	}
	if f.bw.Buffered() > 0 {
		if f.idle > 0 {
			_ = f.cn.SetWriteDeadline(time.Now().Add(f.idle))
		}
		if err := f.bw.Flush(); err != nil {
			return 0, err
		}
	}
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		f.err = err
	}
	return n, err
}

// errBodyTooLong is a streamed body that gave more than its declared
// length.
var errBodyTooLong = errors.New("longer than its Content-Length")

// BodyError is a request body that could not be read from its source
// (the downstream, or a filter that refused it) while it was being sent:
// the upstream is not at fault.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return "request body: " + e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

func isBodyError(err error) bool {
	var be *BodyError
	return errors.As(err, &be)
}

var h1BodyPool sync.Pool

// h1Body reads one response body off its pooled connection.
type h1Body[C conn] struct {
	e                      *Endpoint
	hc                     *fasthttp.HostClient
	cc                     C
	br                     *bufio.Reader
	h                      *fasthttp.ResponseHeader // for a chunked body's trailers
	closeConn, releaseConn func(*fasthttp.HostClient, C)

	cl      int  // declared length: -1 chunked, -2 until close
	left    int  // bytes left: of the body (length), of the chunk (chunked)
	chunked bool // Transfer-Encoding: chunked
	keep    bool // the connection may be reused once the body is read
	eof     bool // the body was read to its end
	err     error
	idle    time.Duration
	last    time.Time // when the read deadline was last pushed

	head   []byte   // a spliced chunked body's size lines (SpliceChunksTo)
	vec    [][]byte // what one writev of it sends, kept with head
	bufs   net.Buffers
	capped cappedReader[C] // rd's source
	rd     *bufio.Reader   // a spliced chunked body's reader, while it is spliced
	// paced is the counted connection under cc, which pushes the read
	// deadline before each socket read while the body is read (nil: none,
	// pushRead does it per step).
	paced *countedConn
}

// countedUnder is the counted connection c is or wraps (TLS), nil if none.
func countedUnder(c net.Conn) *countedConn {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*countedConn)
	return cc
}

// cappedReader hands out what pre holds, then reads r, at most max bytes
// a call (max 0: no cap). Before each read of r, the only reads that may
// wait on the upstream, body pushes src's read deadline ahead: every wait
// has its deadline set in this one place, just before it, whatever the
// reader on top (a size line, chunk data, a CRLF, the trailers) asks for.
type cappedReader[C conn] struct {
	pre  *bufio.Reader
	r    io.Reader
	max  int
	body *h1Body[C]
	src  *net.TCPConn
}

func (c *cappedReader[C]) Read(p []byte) (int, error) {
	if n := c.pre.Buffered(); n > 0 {
		return c.pre.Read(p[:min(len(p), n)])
	}
	if c.max > 0 && len(p) > c.max {
		p = p[:c.max]
	}
	c.body.pushReadDeadline(c.src)
	return c.r.Read(p)
}

func (b *h1Body[C]) ContentLength() int {
	if b.cl < 0 {
		return -1
	}
	return b.cl
}

func (b *h1Body[C]) Read(p []byte) (n int, err error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	b.pushRead()
	switch {
	case b.chunked:
		n, err = b.readChunked(p)
	case b.cl == -2:
		n, err = b.br.Read(p)
		if err == io.EOF {
			b.eof = true
			return n, io.EOF
		}
	default:
		if b.left == 0 {
			b.eof = true
			return 0, io.EOF
		}
		if len(p) > b.left {
			p = p[:b.left]
		}
		n, err = b.br.Read(p)
		b.left -= n
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the upstream closed mid-body
		}
		if err == nil && b.left == 0 {
			b.eof = true
			err = io.EOF
		}
	}
	if err != nil && err != io.EOF {
		if readTimedOut(err) {
			err = ErrBodyIdle
		}
		b.err = err
	}
	return n, err
}

// pushRead moves the connection's read deadline ahead as the idle bound
// asks, once a tenth of it has gone by (a fast body costs a time.Now a
// step, no syscall). It runs before each step of a read that may wait on
// the socket, whatever the reader holds (part of a size line or CRLF
// still needs the socket): a wait never runs under a deadline pushed
// before an earlier wait, or before the consumer's pause between reads.
func (b *h1Body[C]) pushRead() {
	if b.idle > 0 && b.paced == nil {
		if now := time.Now(); now.Sub(b.last) > b.idle/10 {
			b.last = now
			_ = b.cc.Conn().SetReadDeadline(now.Add(b.idle))
		}
	}
}

// readChunked reads from a chunked body: at most the current chunk.
func (b *h1Body[C]) readChunked(p []byte) (int, error) {
	if b.left == 0 {
		size, err := readChunkSize(b.br)
		if err != nil {
			return 0, err
		}
		b.pushRead()
		if size == 0 {
			if err := b.h.ReadTrailer(b.br); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			b.eof = true
			return 0, io.EOF
		}
		b.left = size
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= n
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if err == nil && b.left == 0 {
		b.pushRead()
		err = readCRLF(b.br)
	}
	return n, err
}

// readChunkSize reads a chunk-size line (RFC 9112 §7.1), extensions ignored.
func readChunkSize(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == bufio.ErrBufferFull {
			err = errBadChunk
		}
		return 0, err
	}
	return parseChunkSize(line[:len(line)-1])
}

// parseChunkSize parses a chunk-size line without its LF.
func parseChunkSize(line []byte) (int, error) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, errBadChunk
	}
	n := 0
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int(c-'A'+10)
		default:
			return 0, errBadChunk
		}
	}
	return n, nil
}

func readCRLF(br *bufio.Reader) error {
	for _, want := range [2]byte{'\r', '\n'} {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if c != want {
			return errBadChunk
		}
	}
	return nil
}

// Close gives the connection back to the pool when the body was read whole
// on a reusable connection, and closes it otherwise.
func (b *h1Body[C]) Close() error {
	if b.e == nil {
		return nil
	}
	b.hc.ReleaseReader(b.br)
	if b.paced != nil {
		b.paced.paceReads(0) // the next request's reads are the route's
	}
	// A cluster replaced while the body streamed has closed its idle
	// connections already: do not leave this one in its pool.
	if b.eof && b.keep && b.err == nil && !b.e.c.closed.Load() {
		pooled(b.cc.Conn())
		b.releaseConn(b.hc, b.cc)
	} else {
		b.closeConn(b.hc, b.cc)
	}
	e, head, vec := b.e, b.head, b.vec
	*b = h1Body[C]{head: head[:0], vec: vec[:0]}
	h1BodyPool.Put(b)
	e.done()
	return nil
}
