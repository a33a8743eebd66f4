package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/httpheader"
	"github.com/weftmesh/weft/proxy/listener"
)

// The HTTP/1.1 request body, streamed. The listener's fasthttp server
// hands a request to the handler once its headers are read, with the body
// still on the connection (StreamRequestBody). A body that came whole with
// its headers (a Content-Length of at most wholeRequestBody, which fasthttp
// has already read) is taken whole, as before streaming: one body callback
// with end_of_stream, mirrored, retried. Any other body (chunked, or
// longer) streams: the headers go through the filters and routing at once
// (end_of_stream false), then the body is read from the client as the
// upstream try sends it, chunk by chunk through the filters' body
// callbacks (filter.Chain.DecodeData), and buffered only while a filter
// answers StopAndBuffer, up to that filter's max_body_bytes (then 413).
// The listener's limits.max_body_bytes bounds the body's size, not weft's
// memory: a Content-Length over it is a 413 at once, a chunked body that
// grows past it a 413 before any answer (both counted). Retries replay
// what the retry buffer kept (replay.go).

// wholeRequestBody is the largest request body taken whole: fasthttp reads
// up to 8 KiB of a Content-Length body with the headers, so such a body
// costs no wait.
const wholeRequestBody = 8 << 10

var (
	// errRequestTooLarge ends a streamed request body that grew past the
	// listener's max_body_bytes.
	errRequestTooLarge = errors.New("request body larger than the listener's max_body_bytes")
	// errBodyFilterReply ends a streamed request body a filter answered.
	errBodyFilterReply = errors.New("a request body filter answered locally")
	// errBodyAborted ends a body the upstream's transport gave up on (the
	// upstream answered without it, or the try failed).
	errBodyAborted = errors.New("request body: no longer wanted upstream")
)

// h1RequestBody is an HTTP/1.1 request body streaming from the client. It
// is what the upstream try reads (through a replayBody); it lives in the
// exchange.
type h1RequestBody struct {
	x        *exchange
	src      io.Reader // fasthttp's stream of the request body
	size     int       // the client's Content-Length, -1 chunked
	limit    int       // the listener's max_body_bytes
	filtered bool      // the body passes through filters
	active   bool      // a body streams on this exchange

	// ctx and rt push the client connection's read deadline ahead as the
	// body comes: the listener's read_timeout bounds each silence, not the
	// whole upload.
	ctx  *fasthttp.RequestCtx
	rt   time.Duration
	last time.Time

	// aborted is set (from the transport's goroutine) when the upstream
	// no longer wants the body.
	aborted atomic.Bool

	read    int64 // bytes read from the client
	eof     bool  // the client's body ended
	err     error // why the body ended early (the client's, or ours)
	buf     []byte
	out     []byte
	pending []byte
	// replay is the retry buffer the upstream tries read through (set by
	// forward).
	replay *replayBody
	// reply is a body filter's local reply: the filter wrote it in the
	// stream's Response, which the upstream try then resets.
	reply *fasthttp.Response
}

// startRequestBody prepares a request's body as the exchange's: whole in
// the request when it came with the headers, streaming otherwise. It
// reports false when the request is refused (413, over max_body_bytes):
// the answer is in the response.
func (rl *runningListener) startRequestBody(ctx *fasthttp.RequestCtx, ls *listenerState, x *exchange) bool {
	req := &ctx.Request
	if !req.IsBodyStream() {
		return true
	}
	limit := orDefault(ls.limits.MaxBodyBytes, listener.DefaultMaxBodyBytes)
	size := req.Header.ContentLength()
	if size > limit {
		refuseBody(ls, x)
		return false
	}
	if size >= 0 && size <= wholeRequestBody {
		_ = req.Body() // already read: from fasthttp's prefetch
		return true
	}
	b := &x.in
	src := req.BodyStream()
	req.SetBodyRaw(nil) // the stream is ours now; the request keeps the headers
	b.reset()
	b.x, b.src, b.size, b.limit, b.filtered, b.active = x, src, size, limit, x.filtered(), true
	b.ctx, b.rt = ctx, time.Duration(ls.limits.ReadTimeout)
	if b.rt <= 0 {
		b.rt = listener.DefaultReadTimeout
	}
	x.stream.RequestBodyStreamed = true
	return true
}

// refuseBody answers 413 for a body over max_body_bytes, counted, and
// has the connection closed (its body is not read).
func refuseBody(ls *listenerState, x *exchange) {
	s := &x.stream
	s.SendLocalReply(fasthttp.StatusRequestEntityTooLarge, []byte("request body too large\n"), nil)
	x.closeDown = true
	if ls.bodyTooLarge != nil {
		ls.bodyTooLarge.Inc()
	}
}

// Read gives the upstream try the next body bytes, through the filters
// when there are any.
func (b *h1RequestBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if now := time.Now(); now.Sub(b.last) > b.rt/10 {
		b.last = now
		_ = b.ctx.SetReadDeadline(now.Add(b.rt))
	}
	if !b.filtered {
		if b.eof {
			return 0, io.EOF
		}
		n, err := b.src.Read(p)
		if err = b.account(n, err); err != nil && err != io.EOF {
			return 0, err
		}
		return n, err
	}
	for len(b.pending) == 0 {
		if b.eof {
			return 0, io.EOF
		}
		if b.buf == nil {
			b.buf = make([]byte, 32<<10)
		}
		n, err := b.src.Read(b.buf)
		if err = b.account(n, err); err != nil && err != io.EOF {
			return 0, err
		}
		if n == 0 && !b.eof {
			continue
		}
		x := b.x
		s := &x.stream
		// A chunked body's trailers came with its last chunk (fasthttp
		// read them into the request's header): as in Envoy, the body
		// then ends without end_of_stream and the trailers callbacks
		// end the stream.
		var trailers *fasthttp.ResponseHeader
		if b.eof && b.size < 0 {
			trailers = requestTrailerMap(&s.Request.Header)
		}
		s.Request.SetBodyRaw(b.buf[:n])
		st := x.chain.DecodeData(s, b.eof && trailers == nil)
		if st == filter.StopAndBuffer && trailers != nil {
			// A filter buffering to the end gets it before the trailers.
			s.Request.SetBodyRaw(nil)
			st = x.chain.DecodeData(s, true)
		}
		switch st {
		case filter.Continue:
			b.out = append(b.out[:0], s.Request.Body()...)
			b.pending = b.out
			if trailers != nil {
				s.RequestTrailers = trailers
				if x.chain.DecodeTrailers(s) == filter.LocalReply {
					b.replied()
					break
				}
				// What goes upstream is the trailers as the filters left them.
				httpheader.SetRequestTrailers(&s.Request.Header, trailers.All())
			}
		case filter.LocalReply:
			b.replied()
		}
		s.Request.SetBodyRaw(nil) // nothing of ours stays in the request
		if b.err != nil {
			return 0, b.err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// replied ends the body with a filter's local reply (in the stream's
// Response, which the upstream try then resets: keep a copy).
func (b *h1RequestBody) replied() {
	b.reply = fasthttp.AcquireResponse()
	b.x.stream.Response.CopyTo(b.reply)
	b.err = errBodyFilterReply
}

// requestTrailerMap is a copy of the trailers read after a chunked request
// body, for filters to read and edit (nil when there are none). Names are
// lower case, as HTTP/2's, so a filter sees one spelling.
func requestTrailerMap(h *fasthttp.RequestHeader) *fasthttp.ResponseHeader {
	var t *fasthttp.ResponseHeader
	for k, v := range httpheader.RequestTrailers(h) {
		if t == nil {
			t = &fasthttp.ResponseHeader{}
			t.SetNoDefaultContentType(true)
			t.DisableNormalizing()
		}
		t.AddBytesKV(bytes.ToLower(k), v)
	}
	return t
}

// account counts n bytes read from the client and turns the read's error
// into the body's: io.EOF at its end, errRequestTooLarge past the limit.
func (b *h1RequestBody) account(n int, err error) error {
	b.read += int64(n)
	if b.read > int64(b.limit) {
		b.err = errRequestTooLarge
		return b.err
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.aborted.Load():
		b.err = errBodyAborted
		return b.err
	case err != nil:
		b.err = err
	}
	return err
}

// BodySocket offers the body's next bytes on the client's socket for
// splicing to the upstream (cluster.BodySplicer): only for a body no
// filter reads, on a plain TCP connection, when everything read from the
// socket so far has been read from fasthttp's stream (it holds none of
// the body), and never past the listener's max_body_bytes (the byte over
// it is read, and refused, the ordinary way).
func (b *h1RequestBody) BodySocket() (*net.TCPConn, int64, bool) {
	if b.filtered || b.eof || b.err != nil {
		return nil, 0, false
	}
	tc, passed, left, ok := listener.BodyOnSocket(b.ctx.Conn(), b.ctx.ConnRequestNum())
	if !ok || passed != b.read {
		return nil, 0, false
	}
	if room := int64(b.limit) - b.read; left > room {
		left = room
	}
	if left <= 0 {
		return nil, 0, false
	}
	return tc, left, true
}

// BodyHeld is how many of the body's bytes wait in fasthttp's reader (0
// when unknown): a Read of up to that many returns without waiting for
// the client.
func (b *h1RequestBody) BodyHeld() int64 {
	if b.filtered || b.eof || b.err != nil {
		return 0
	}
	passed, ok := listener.BodyRead(b.ctx.Conn(), b.ctx.ConnRequestNum())
	if !ok || passed <= b.read {
		return 0
	}
	return passed - b.read
}

// BodySpliced counts n bytes spliced from the client's socket as read:
// fasthttp's stream is moved past them (listener.SkipBody, then reads that
// touch no socket) so that the connection can serve its next request.
// err is the socket's read error, if the splice stopped on it.
func (b *h1RequestBody) BodySpliced(n int64, err error) error {
	splicedRequestBytes.Add(n)
	if n > 0 {
		listener.SkipBody(b.ctx.Conn(), n)
		if derr := b.discard(n); derr != nil {
			err = derr
		}
	}
	if err == nil {
		err = b.account(0, nil)
	} else {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the client closed mid-body
		}
		err = b.account(0, err)
	}
	if err == io.EOF {
		return nil
	}
	return err
}

// discard reads n bytes of fasthttp's body stream that were spliced (they
// read no socket) and counts them.
func (b *h1RequestBody) discard(n int64) error {
	bp := spliceDiscardPool.Get().(*[]byte)
	defer spliceDiscardPool.Put(bp)
	for n > 0 {
		k, err := b.src.Read((*bp)[:min(int64(len(*bp)), n)])
		n -= int64(k)
		if err = b.account(k, err); err != nil && (err != io.EOF || n > 0) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// splicedRequestBytes counts the request body bytes spliced since the
// process started: the tests' evidence that the path ran.
var splicedRequestBytes atomic.Int64

// spliceDiscardPool holds the buffers discard passes to fasthttp's stream:
// as large as its reader's default buffer, so that the reads go straight
// through it.
var spliceDiscardPool = sync.Pool{New: func() any { b := make([]byte, listener.DefaultMaxHeaderBytes); return &b }}

// BodyTick pushes the client's read deadline ahead, as Read does.
func (b *h1RequestBody) BodyTick() {
	if now := time.Now(); now.Sub(b.last) > b.rt/10 {
		b.last = now
		_ = b.ctx.SetReadDeadline(now.Add(b.rt))
	}
}

// Abort cuts short a read waiting for the client: the upstream's transport
// gave up on the body (the client's connection will close).
func (b *h1RequestBody) Abort() {
	b.aborted.Store(true)
	_ = b.ctx.SetReadDeadline(time.Now())
}

// Close is a no-op: fasthttp's server owns the client's connection.
func (b *h1RequestBody) Close() error { return nil }

// finished reports whether the client's body was read to its end (the
// connection can then serve its next request).
func (b *h1RequestBody) finished() bool { return !b.active || b.eof }

// broke reports whether the body, not the upstream, ended a try: the
// client's body failed, grew too large, or a filter answered.
func (b *h1RequestBody) broke() bool {
	return b != nil && b.active && b.err != nil && b.err != errBodyAborted
}

// upstream is what a try sends: the body through the retry buffer, and its
// length (-1: chunked, when filters may change it).
func (b *h1RequestBody) upstream() (io.Reader, int) {
	size := b.size
	if b.filtered {
		size = -1
	}
	return b.replay.reader(), size
}

// failed answers for a streamed request whose try ended because of its
// body, not the upstream: a filter's reply, a body over the listener's
// limit (413, counted), or a client that broke off (400) or went silent
// past the listener's read_timeout (408); the connection closes. It reports false when the body is not the cause.
func (b *h1RequestBody) failed(ls *listenerState, rej *listener.Rejects, log *zap.Logger, ctx *fasthttp.RequestCtx) bool {
	if !b.broke() {
		return false
	}
	if errors.Is(b.err, listener.ErrBareLF) && rej != nil {
		// The listener's framer cut the trailers at a bare LF: the
		// same refusal as in a head, counted as one.
		rej.Add(listener.RejectBareLF, ls.name, log, ctx.RemoteAddr().String())
	}
	x := b.x
	s := &x.stream
	switch b.err {
	case errBodyFilterReply:
		b.reply.CopyTo(s.Response)
		fasthttp.ReleaseResponse(b.reply)
		b.reply = nil
	case errRequestTooLarge:
		refuseBody(ls, x)
	default:
		status := fasthttp.StatusBadRequest
		if ne, ok := b.err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			status = fasthttp.StatusRequestTimeout // silent past read_timeout
		}
		s.SendLocalReply(status, []byte("request body: "+b.err.Error()+"\n"), nil)
		s.ResponseFlags = "DPE" // Envoy's downstream protocol error
	}
	x.closeDown = true
	return true
}

// reset forgets the exchange's body, keeping its buffers.
func (b *h1RequestBody) reset() {
	if b.reply != nil {
		fasthttp.ReleaseResponse(b.reply)
	}
	buf, out := b.buf, b.out
	*b = h1RequestBody{buf: buf, out: out[:0]}
}
