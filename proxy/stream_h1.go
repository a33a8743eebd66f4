package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/httpheader"
	"github.com/weftmesh/weft/proxy/listener"
	"github.com/weftmesh/weft/proxy/resilience"
)

// The HTTP/1.1 response body, streamed. When an upstream answer's body did
// not come whole with its headers, cluster.Endpoint.DoStream leaves it on
// the upstream connection; the listener's handler returns with the body
// set as the response's body stream, and fasthttp's server writes it as it
// is read: with the upstream's Content-Length when no filter can change
// it, chunked (and flushed chunk by chunk) otherwise. With filters, each
// chunk passes through filter.Chain.EncodeData, as on an HTTP/2 stream.
// The exchange (metrics, access log, OnLog/OnDone, the span) finishes when
// fasthttp closes the body stream, which it always does: after the last
// byte, on a write error, or when the response is reset.

// errReplyMidBody ends a response a body filter answered after its headers
// had gone: the client's connection is closed (it cannot be answered).
var errReplyMidBody = errors.New("a response body filter answered after the response began")

// h1Body is the body stream of one HTTP/1.1 response (in the exchange).
type h1Body struct {
	x   *exchange
	rl  *runningListener
	ls  *listenerState
	ctx *fasthttp.RequestCtx

	filtered bool
	done     bool // the upstream body was read to its end
	err      error
	buf      []byte // read buffer (filtered bodies), kept with the exchange
	out      []byte // what the filters let through, kept with the exchange
	pending  []byte // of out, still to send
	sent     int64

	wt   time.Duration // the listener's write timeout, pushed ahead as bytes go
	last time.Time

	chunked bool        // the client gets the body chunked
	head    [18]byte    // a chunk's size line, written around fasthttp's writer
	vec     [3][]byte   // size line, data, CRLF: one writev
	bufs    net.Buffers // over vec
}

// streamBody sets the upstream body (x.up) to stream to the client and
// reports true; the exchange then finishes when the stream is closed. With
// filters, the headers are held while the filters buffer (StopAndBuffer):
// a filter that buffers the whole body gets it whole and the answer goes
// as an ordinary one (false: x.up is then closed and the body in the
// response), and one that answers before anything was sent replaces the
// response (a 500 for a body over its max_body_bytes).
func (rl *runningListener) streamBody(ctx *fasthttp.RequestCtx, ls *listenerState, x *exchange) bool {
	s, resp := &x.stream, &ctx.Response
	b := &x.h1
	b.x, b.rl, b.ls, b.ctx = x, rl, ls, ctx
	b.filtered = x.filtered()
	b.wt = time.Duration(ls.limits.WriteTimeout)
	size := x.up.ContentLength()
	if b.filtered {
		size = -1 // body filters may change its length
	}
	if size < 0 && !ctx.Request.Header.IsHTTP11() {
		// An HTTP/1.0 client cannot take a chunked body (RFC 9112 §6.1):
		// it gets the answer whole, with its length, as before streaming.
		rl.wholeBody(x)
		return false
	}
	if b.filtered {
		if b.buf == nil {
			b.buf = make([]byte, 32<<10)
		}
		for len(b.pending) == 0 && !b.done {
			n, err := x.up.Read(b.buf)
			if err != nil && err != io.EOF {
				// Nothing has been sent: the client gets a 502.
				rl.endUpstream(x)
				failResponse(s, resilience.Reset)
				return false
			}
			eof := err == io.EOF
			if n == 0 && !eof {
				continue
			}
			data, st := b.encode(b.buf[:n], eof)
			if st == filter.LocalReply {
				rl.endUpstream(x) // the filter's reply is in s.Response
				return false
			}
			if eof && len(resp.Header.TrailerHeader()) > 2 {
				// The whole body came at once, with trailers: it streams
				// (chunked), as only that framing carries them.
				b.done = true
			} else if eof {
				// The filters held it all: an ordinary answer, whole.
				b.out = append(b.out[:0], data...)
				resp.SetBody(b.out) // a copy: the exchange's buffers are reused
				rl.endUpstream(x)
				return false
			}
			if st == filter.Continue && len(data) > 0 {
				b.out = append(b.out[:0], data...)
				b.pending = b.out
			}
		}
	}
	// From here the headers are on their way: what filters and logs see
	// of the response is a copy of them (the response itself streams).
	resp.Header.CopyTo(&x.scratch.Header)
	s.Response = &x.scratch
	resp.ImmediateHeaderFlush = true // an event stream's headers go at once
	if b.wt > 0 {
		b.last = time.Now()
		_ = ctx.SetWriteDeadline(b.last.Add(b.wt))
	}
	b.chunked = size < 0
	resp.SetBodyStream(b, size)
	return true
}

// wholeLimit bounds an answer read whole for an HTTP/1.0 client (the old
// buffered limit): a larger one is a 502.
const wholeLimit = 64 << 20

// wholeBody reads x.up to its end, through the filters when the stream has
// any, into the response (an ordinary answer), and closes it. A broken or
// oversized body becomes a 502 (nothing has been sent yet); a filter's
// reply replaces the response.
func (rl *runningListener) wholeBody(x *exchange) {
	s, b := &x.stream, &x.h1
	if b.buf == nil {
		b.buf = make([]byte, 32<<10)
	}
	var body []byte // fresh: the response keeps it, the exchange does not
	for {
		n, err := x.up.Read(b.buf)
		if err != nil && err != io.EOF {
			rl.endUpstream(x)
			failResponse(s, resilience.Reset)
			return
		}
		eof := err == io.EOF
		data := b.buf[:n]
		if b.filtered && (n > 0 || eof) {
			var st filter.Status
			if data, st = b.encode(data, eof); st == filter.LocalReply {
				rl.endUpstream(x)
				return
			}
		}
		if len(body)+len(data) > wholeLimit {
			rl.endUpstream(x)
			failResponse(s, resilience.Reset)
			return
		}
		body = append(body, data...)
		if eof {
			rl.endUpstream(x)
			s.Response.SetBodyRaw(body)
			return
		}
	}
}

// endUpstream closes the upstream body of an answer that will not stream.
func (rl *runningListener) endUpstream(x *exchange) {
	_ = x.up.Close()
	x.up = nil
	x.stream.ResponseBodyStreamed = false
}

// encode runs the response body filters on one chunk and returns what to
// send now, as h2Exchange.encodeData does. A chunked body's trailers came
// with its last chunk (the upstream's reader put them in the response's
// header): as on HTTP/2, the body then ends without end_of_stream, the
// trailers callbacks end the stream, and what goes to the client is the
// trailers as the filters left them.
func (b *h1Body) encode(chunk []byte, last bool) ([]byte, filter.Status) {
	x := b.x
	s := &x.stream
	var trailers *fasthttp.ResponseHeader
	if last {
		trailers = responseTrailerMap(&b.ctx.Response.Header)
	}
	s.Response.SetBodyRaw(chunk)
	st := x.chain.EncodeData(s, last && trailers == nil)
	if st == filter.StopAndBuffer && last {
		// The body ends here: what a filter held goes now.
		s.Response.SetBodyRaw(nil)
		st = x.chain.EncodeData(s, true)
	}
	if st != filter.Continue {
		return nil, st
	}
	data := s.Response.Body()
	if trailers != nil {
		s.ResponseTrailers = trailers
		if x.chain.EncodeTrailers(s) == filter.LocalReply {
			return nil, filter.LocalReply
		}
		httpheader.SetResponseTrailers(&b.ctx.Response.Header, trailers.All())
	}
	return data, filter.Continue
}

// responseTrailerMap is requestTrailerMap for a response's trailers.
func responseTrailerMap(h *fasthttp.ResponseHeader) *fasthttp.ResponseHeader {
	var t *fasthttp.ResponseHeader
	for k, v := range httpheader.ResponseTrailers(h) {
		if t == nil {
			t = &fasthttp.ResponseHeader{}
			t.SetNoDefaultContentType(true)
			t.DisableNormalizing()
		}
		t.AddBytesKV(bytes.ToLower(k), v)
	}
	return t
}

// Read gives fasthttp's server the next body bytes.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.pushWriteDeadline()
	x := b.x
	if !b.filtered {
		n, err := x.up.Read(p)
		b.sent += int64(n)
		if err == io.EOF {
			b.done = true
		} else if err != nil {
			b.fail(err)
		}
		return n, err
	}
	for len(b.pending) == 0 {
		if b.done {
			return 0, io.EOF
		}
		n, err := x.up.Read(b.buf)
		if err != nil && err != io.EOF {
			b.fail(err)
			return 0, err
		}
		eof := err == io.EOF
		if n == 0 && !eof {
			continue
		}
		data, st := b.encode(b.buf[:n], eof)
		if st == filter.LocalReply {
			x.stream.ResponseFlags = "LR"
			b.err = errReplyMidBody
			return 0, b.err
		}
		b.done = eof
		if st == filter.Continue && len(data) > 0 {
			b.out = append(b.out[:0], data...)
			b.pending = b.out
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	b.sent += int64(n)
	return n, nil
}

// SupportsBodyWriteTo lets fasthttp's server use WriteTo, which does what
// Read does with a larger buffer than the server's 4 KiB copy buffer:
// fewer, larger reads and writes (a chunked body is still flushed chunk
// by chunk).
func (b *h1Body) SupportsBodyWriteTo() bool { return true }

// h1CopyPool holds WriteTo's buffers, taken only while a body is copied.
var h1CopyPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// WriteTo copies the body to w through Read, or, for a body no filter
// reads between two plain TCP connections, splices it from the upstream's
// socket to the client's: a Content-Length body whole (cluster.Splicer),
// a chunked one chunk by chunk (cluster.ChunkSplicer). The headers are
// flushed already (ImmediateHeaderFlush), so nothing of fasthttp's writer
// is bypassed.
func (b *h1Body) WriteTo(w io.Writer) (int64, error) {
	if !b.filtered {
		if sp, ok := b.x.up.(cluster.Splicer); ok {
			if dst := listener.TCPConn(b.ctx.Conn()); dst != nil {
				n, ok, err := sp.SpliceTo(dst, b.pushWriteDeadline)
				if ok {
					return b.spliced(n, err)
				}
			}
		}
	}
	// A chunked body goes to a plain TCP client one writev per chunk (size
	// line, data, CRLF): fasthttp's chunk writer, through its 4 KiB
	// buffer, took three writes for each. Its buffer is empty (the headers
	// were flushed, and nothing else goes through it until the body's
	// end, when it writes the last chunk and the trailers). From a chunked
	// upstream no filter reads, the chunks' data is spliced
	// (cluster.ChunkSplicer), their framing written around it.
	var dst *net.TCPConn
	if b.chunked {
		dst = listener.TCPConn(b.ctx.Conn())
		if cs, ok := b.x.up.(cluster.ChunkSplicer); ok && dst != nil && !b.filtered {
			n, ok, err := cs.SpliceChunksTo(dst, b.pushWriteDeadline)
			if ok {
				return b.spliced(n, err)
			}
		}
	}
	bp := h1CopyPool.Get().(*[]byte)
	defer h1CopyPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := b.Read(buf)
		if n > 0 {
			var werr error
			if dst != nil {
				werr = b.writeChunk(dst, buf[:n])
			} else {
				_, werr = w.Write(buf[:n])
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

// spliced records a body that went through a cluster.Splicer or
// ChunkSplicer: n bytes, and who failed if it did not end.
func (b *h1Body) spliced(n int64, err error) (int64, error) {
	b.sent += n
	switch {
	case err == nil:
		b.done = true
	case !cluster.IsWriteError(err):
		b.fail(err)
	}
	return n, err
}

// writeChunk writes p to the client as one chunk, in one writev.
func (b *h1Body) writeChunk(dst *net.TCPConn, p []byte) error {
	head := strconv.AppendInt(b.head[:0], int64(len(p)), 16)
	head = append(head, '\r', '\n')
	b.vec = [3][]byte{head, p, crlf}
	b.bufs = b.vec[:] // a field: a local would escape, once per chunk
	_, err := b.bufs.WriteTo(dst)
	return err
}

var crlf = []byte("\r\n")

// pushWriteDeadline moves the client's write deadline ahead: the
// listener's write timeout bounds each write, not the whole body. It
// moves once a tenth of it has gone by.
func (b *h1Body) pushWriteDeadline() {
	if b.wt > 0 {
		if now := time.Now(); now.Sub(b.last) > b.wt/10 {
			b.last = now
			_ = b.ctx.SetWriteDeadline(now.Add(b.wt))
		}
	}
}

// fail records an upstream body that broke: the client's connection is
// closed (fasthttp ends a response whose body stream fails).
func (b *h1Body) fail(err error) {
	b.err = err
	s := &b.x.stream
	if errors.Is(err, cluster.ErrBodyIdle) {
		s.ResponseFlags = "SI" // Envoy's stream idle timeout
	} else {
		s.ResponseFlags = "UPE"
	}
}

// Close ends the exchange: fasthttp calls it once the body is written, the
// write failed, or the response was dropped.
func (b *h1Body) Close() error {
	x := b.x
	if x == nil {
		return nil
	}
	s := &x.stream
	if !b.done && b.err == nil && s.ResponseFlags == "" {
		s.ResponseFlags = "DC" // the client went away mid-body
	}
	_ = x.up.Close()
	x.up = nil
	s.ResponseBytesSent = b.sent
	rl, ls, ctx := b.rl, b.ls, b.ctx
	buf, out := b.buf, b.out
	*b = h1Body{buf: buf, out: out[:0]}
	rl.finish(ctx, ls, x)
	releaseExchange(x)
	ls.active.Dec()
	return nil
}
