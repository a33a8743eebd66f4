package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/listener"
)

// Serving gRPC-Web (grpcweb.go has the translation): on an HTTP/2 stream
// the call is translated and served in place; an HTTP/1.1 call is bridged
// to the same stream path, its answer streamed back chunked.

// serveHTTP2 is a listener's HTTP/2 stream handler.
func (rl *runningListener) serveHTTP2(w http.ResponseWriter, r *http.Request) {
	if ls := rl.state.Load(); ls != nil && ls.grpcWeb != nil && rl.serveGRPCWeb(w, r, ls.grpcWeb) {
		return
	}
	rl.serveH2(w, r)
}

// serveGRPCWeb answers a CORS preflight, or serves a gRPC-Web call; false
// when the request is neither.
func (rl *runningListener) serveGRPCWeb(w http.ResponseWriter, r *http.Request, web *grpcWeb) bool {
	origin := r.Header.Get("Origin")
	if web.cors != nil && isPreflight(r.Method, origin, r.Header.Get("Access-Control-Request-Method")) {
		w.WriteHeader(web.cors.preflight(w.Header(), origin, r.Header.Get("Access-Control-Request-Headers")))
		return true
	}
	call, ok := parseGRPCWeb(r.Header.Get("Content-Type"), r.Header.Get("Accept"))
	if !ok {
		return false
	}
	call.toGRPC(r)
	ww := newGRPCWebWriter(w, call, web.cors, origin)
	rl.serveH2(ww, r) // a broken answer panics (http.ErrAbortHandler): no trailer frame then
	_ = ww.finish()
	return true
}

// serveGRPCWebH1 is serveGRPCWeb for an HTTP/1.1 request: the call runs
// as an HTTP/2 stream would (serveH2) on its own goroutine; the handler
// returns once the answer's headers are known and the body streams
// (chunked) as serveH2 writes it.
func (rl *runningListener) serveGRPCWebH1(ctx *fasthttp.RequestCtx, ls *listenerState) bool {
	web := ls.grpcWeb
	req := &ctx.Request
	origin := string(req.Header.Peek("Origin"))
	if web.cors != nil && isPreflight(string(req.Header.Method()), origin, string(req.Header.Peek("Access-Control-Request-Method"))) {
		h := http.Header{}
		ctx.SetStatusCode(web.cors.preflight(h, origin, string(req.Header.Peek("Access-Control-Request-Headers"))))
		for k, vs := range h {
			for _, v := range vs {
				ctx.Response.Header.Add(k, v)
			}
		}
		return true
	}
	call, ok := parseGRPCWeb(string(req.Header.ContentType()), string(req.Header.Peek("Accept")))
	if !ok {
		return false
	}
	limit := orDefault(ls.limits.MaxBodyBytes, listener.DefaultMaxBodyBytes)
	body, err := webRequestBody(ctx, limit)
	if err != nil {
		ctx.SetConnectionClose()
		ctx.Error("request body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return true
	}
	r, err := h1AsStream(ctx, body)
	if err != nil {
		ctx.Error("bad request target", http.StatusBadRequest)
		return true
	}
	call.toGRPC(r)
	sw := newH1StreamWriter(orDur(ls.limits.WriteTimeout.D(), listener.DefaultWriteTimeout))
	ww := newGRPCWebWriter(sw, call, web.cors, origin)
	go func() {
		complete := false
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				rl.p.log.Error("gRPC-Web call panicked", zap.Any("panic", v))
			}
			sw.end(complete)
		}()
		rl.serveH2(ww, r)
		complete = ww.finish() == nil
	}()
	<-sw.headers
	ctx.SetStatusCode(sw.code)
	for k, vs := range sw.h {
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	ctx.SetBodyStream(sw, -1)
	return true
}

func orDur(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// webRequestBody reads an HTTP/1.1 request's body (a browser sends a
// gRPC-Web call's whole), at most limit bytes.
func webRequestBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	if bs := ctx.RequestBodyStream(); bs != nil {
		b, err := io.ReadAll(io.LimitReader(bs, int64(limit)+1))
		if err != nil {
			return nil, err
		}
		if len(b) > limit {
			return nil, errors.New("over limits.max_body_bytes")
		}
		return b, nil
	}
	return bytes.Clone(ctx.PostBody()), nil
}

// h1AsStream builds the net/http request serveH2 takes from an HTTP/1.1
// request (copies: the goroutine serving it outlives the handler).
func h1AsStream(ctx *fasthttp.RequestCtx, body []byte) (*http.Request, error) {
	req := &ctx.Request
	uri := string(req.Header.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	h := make(http.Header)
	for k, v := range req.Header.All() {
		switch string(bytes.ToLower(k)) {
		case "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length":
			continue
		}
		h.Add(string(k), string(v))
	}
	ci := &listener.ConnInfo{ID: ctx.ConnID(), Local: ctx.LocalAddr(), Remote: ctx.RemoteAddr(), TLS: connTLS(ctx)}
	r := (&http.Request{
		Method:        string(req.Header.Method()),
		URL:           u,
		RequestURI:    uri,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Host:          string(req.Header.Host()),
		RemoteAddr:    ctx.RemoteAddr().String(),
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
	}).WithContext(listener.WithConnInfo(context.Background(), ci))
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	return r, nil
}

// h1StreamWriter is the http.ResponseWriter of a gRPC-Web call bridged
// from HTTP/1.1: the headers are handed to the fasthttp handler (headers
// closes), and the body to fasthttp as the response's body stream, which
// it writes chunked, flushing each chunk. An answer that broke midway
// ends the stream with an error, so fasthttp closes the connection and the
// browser sees the body end without its trailer frame.
type h1StreamWriter struct {
	h       http.Header
	code    int
	headers chan struct{} // closed once the headers are set (or the call ended)
	chunks  chan []byte
	acks    chan struct{} // a chunk was read whole
	done    chan struct{} // closed when the call ended
	closed  chan struct{} // closed when fasthttp is done with the body
	once    sync.Once
	close   sync.Once
	timeout time.Duration // how long a Write waits for fasthttp to take it
	ok      bool          // the answer is whole (set before done closes)
	err     error
	pending []byte // Read side: the chunk being read
}

var errBodyWriterGone = errors.New("the HTTP/1.1 response body is no longer being written")

func newH1StreamWriter(timeout time.Duration) *h1StreamWriter {
	return &h1StreamWriter{h: make(http.Header), code: http.StatusOK, headers: make(chan struct{}),
		chunks: make(chan []byte), acks: make(chan struct{}), done: make(chan struct{}),
		closed: make(chan struct{}), timeout: timeout}
}

func (w *h1StreamWriter) Header() http.Header { return w.h }

func (w *h1StreamWriter) WriteHeader(code int) {
	w.once.Do(func() {
		w.code = code
		close(w.headers)
	})
}

func (w *h1StreamWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	t := time.NewTimer(w.timeout)
	defer t.Stop()
	select {
	case w.chunks <- p:
	case <-w.closed:
		w.err = errBodyWriterGone
	case <-t.C:
		w.err = errBodyWriterGone
	}
	if w.err == nil {
		select {
		case <-w.acks:
			return len(p), nil
		case <-w.closed:
			w.err = errBodyWriterGone
		}
	}
	return 0, w.err
}

// FlushError: fasthttp flushes every chunk it writes.
func (w *h1StreamWriter) FlushError() error { return w.err }

// SetWriteDeadline: a Write is bounded by the listener's write timeout.
func (w *h1StreamWriter) SetWriteDeadline(time.Time) error { return nil }

// end marks the call over; complete says its answer is whole.
func (w *h1StreamWriter) end(complete bool) {
	w.ok = complete
	w.WriteHeader(http.StatusOK)
	close(w.done)
}

// Read is fasthttp reading the response body.
func (w *h1StreamWriter) Read(p []byte) (int, error) {
	if len(w.pending) == 0 {
		select {
		case w.pending = <-w.chunks:
		case <-w.done:
			if w.ok {
				return 0, io.EOF
			}
			return 0, errBodyWriterGone
		}
	}
	n := copy(p, w.pending)
	w.pending = w.pending[n:]
	if len(w.pending) == 0 {
		w.acks <- struct{}{}
	}
	return n, nil
}

// Close is fasthttp done with the body (written, or the client gone).
func (w *h1StreamWriter) Close() error {
	w.close.Do(func() { close(w.closed) })
	return nil
}
