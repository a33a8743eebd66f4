package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/cluster/h2client"
	"github.com/weftmesh/weft/proxy/httpheader"
	"github.com/weftmesh/weft/proxy/internal/coalesce"
)

// The streaming transport: requests whose bodies flow in chunks (HTTP/2
// and gRPC streams) and requests to HTTP/2 upstreams go through net/http's
// transport, one per endpoint and protocol, dialing through the endpoint
// (max_connections breaker, connect_timeout, mTLS). HTTP/2 connections are
// multiplexed: one carries many concurrent streams, and more are opened
// only past the peer's MAX_CONCURRENT_STREAMS. Load balancing stays per
// request: the proxy picks an endpoint, then its transport.

// Protocols an endpoint's streaming transport speaks.
const (
	protoHTTP1 = iota
	protoH2
	protoAuto // TLS: by ALPN
	numProtos
)

// streamTransports are an endpoint's transports, built on first use.
type streamTransports struct {
	mu sync.Mutex
	t  [numProtos]roundTripper
}

// roundTripper is net/http's transport (HTTP/1.1, and auto by ALPN) or
// weft's own HTTP/2 client (h2client) for protocol http2.
type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// UsesHTTP2 reports whether a request that arrived over HTTP/2 (h2down)
// or HTTP/1.1 goes to this cluster's endpoints over HTTP/2 (or, for
// protocol auto over TLS, may).
func (c *Cluster) UsesHTTP2(h2down bool) bool {
	switch c.protocol {
	case "http2":
		return true
	case "auto":
		return c.tls != nil || h2down
	}
	return false
}

// AlwaysHTTP2 reports whether a request that arrived over HTTP/2 (h2down)
// or HTTP/1.1 surely goes to this cluster's endpoints over HTTP/2 (not
// protocol auto over TLS, which ALPN decides per connection).
func (c *Cluster) AlwaysHTTP2(h2down bool) bool { return c.protoFor(h2down) == protoH2 }

// Protocol is the cluster's configured upstream protocol ("http1",
// "http2" or "auto").
func (c *Cluster) Protocol() string {
	if c.protocol == "" {
		return "http1"
	}
	return c.protocol
}

func (c *Cluster) protoFor(h2down bool) int {
	switch c.protocol {
	case "http2":
		return protoH2
	case "auto":
		if c.tls != nil {
			return protoAuto
		}
		if h2down {
			return protoH2
		}
	}
	return protoHTTP1
}

// RoundTrip sends a request whose body streams (req.Body is read as the
// upstream takes it) and returns the response with its body still
// streaming; trailers arrive in resp.Trailer after the body's EOF. h2down
// says the request came over HTTP/2 (protocol auto follows it in
// plaintext). The request's context bounds the whole exchange: its end
// resets the upstream stream. The endpoint counts the request as active
// until the response body is closed (or RoundTrip fails).
func (e *Endpoint) RoundTrip(req *http.Request, h2down bool) (*http.Response, error) {
	return e.RoundTripTry(req, h2down, nil)
}

// RoundTripTry is RoundTrip for one try of the route's retry policy: tt,
// when not nil, is its per-try timer, armed once the transport had a
// connection and wrote the request whole (pertry.go). The caller stops it.
func (e *Endpoint) RoundTripTry(req *http.Request, h2down bool, tt *TryTimer) (*http.Response, error) {
	e.total.Add(1)
	e.active.Add(1)
	resp, err := e.roundTrip(req, h2down, tt)
	if err != nil {
		e.active.Add(-1)
		return nil, err
	}
	resp.Body = &activeBody{ReadCloser: resp.Body, e: e}
	return resp, nil
}

func (e *Endpoint) roundTrip(req *http.Request, h2down bool, tt *TryTimer) (*http.Response, error) {
	c := e.c
	t := e.streamTransport(c.protoFor(h2down))
	req.URL.Host = e.addr
	if c.tls != nil {
		req.URL.Scheme = "https"
	} else {
		req.URL.Scheme = "http"
	}
	if c.closed.Load() {
		req.Close = true
	}
	if _, ok := t.(*http.Transport); ok {
		rt := e.countResends()
		defer rt.done()
		trace := &rt.trace
		if tt != nil {
			// A trace of its own: the transport may report the request
			// written after RoundTrip returned (an answer that came before
			// the body went), when the pooled one serves another request.
			trace = &httptrace.ClientTrace{GotConn: rt.trace.GotConn, WroteRequest: tt.wroteRequest}
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	} else if tt != nil {
		// Weft's HTTP/2 client reports it the same way.
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{WroteRequest: tt.wroteRequest}))
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, classifyStreamErr(req.Context(), err)
	}
	if cerr := req.Context().Err(); cerr != nil {
		// The deadline passed (or the caller gave up) before the answer
		// reached us: it is not one. net/http hands back a response that
		// raced its own cancellation, and over HTTP/1.1 with TLS that
		// race is of its making: cancelling sends close_notify before the
		// socket closes, the upstream takes it for the client's end,
		// cancels its handler's context, and a handler that then returns
		// answers 200, which the transport reads in between.
		_ = resp.Body.Close()
		return nil, classifyStreamErr(req.Context(), cerr)
	}
	return resp, nil
}

// resendTrace counts the connections net/http's transport takes for one
// request: each after the first is a re-send the transport made on its own
// (a reused connection the upstream closed as the request went, a GOAWAY),
// outside the route's policy, counted in PooledConnRetries as the HTTP/1.1
// pool's are (pooledconn.go; weft's HTTP/2 client counts its own:
// Config.Resent). Pooled: every request through that transport has one,
// and the trace's hook is bound once per pooled value.
type resendTrace struct {
	e     *Endpoint
	conns atomic.Int32
	trace httptrace.ClientTrace // only GotConn set, never changed after New
}

var resendTraces = sync.Pool{New: func() any {
	rt := &resendTrace{}
	rt.trace.GotConn = rt.gotConn
	return rt
}}

// countResends is a trace for one request to e, to give back (done) once
// RoundTrip returned: net/http takes every connection of a request, and so
// calls GotConn, before RoundTrip returns.
func (e *Endpoint) countResends() *resendTrace {
	rt := resendTraces.Get().(*resendTrace)
	rt.e = e
	rt.conns.Store(0)
	return rt
}

func (rt *resendTrace) gotConn(httptrace.GotConnInfo) {
	if rt.conns.Add(1) > 1 {
		rt.e.c.stats.PooledConnRetries.Add(1)
	}
}

func (rt *resendTrace) done() {
	rt.e = nil
	resendTraces.Put(rt)
}

// activeBody ends the endpoint's active count when the body is closed.
type activeBody struct {
	io.ReadCloser
	e    *Endpoint
	once sync.Once
}

func (b *activeBody) Close() error {
	b.once.Do(func() { b.e.active.Add(-1) })
	return b.ReadCloser.Close()
}

// classifyStreamErr maps a transport error onto the errors Classify knows.
func classifyStreamErr(ctx context.Context, err error) error {
	var de *DialError
	switch {
	case errors.As(err, &de), errors.Is(err, ErrOverflow):
		return err
	case errors.Is(err, context.DeadlineExceeded) || (ctx.Err() == context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", fasthttp.ErrTimeout, err)
	}
	return err
}

func (e *Endpoint) streamTransport(proto int) roundTripper {
	st := &e.streams
	st.mu.Lock()
	defer st.mu.Unlock()
	if t := st.t[proto]; t != nil {
		return t
	}
	c := e.c
	if proto == protoH2 {
		t := e.h2Transport()
		st.t[proto] = t
		return t
	}
	// net/http's transport is left with HTTP/1.1 (plaintext or TLS) and
	// auto, which is TLS only (protoFor): plaintext connections are
	// HTTP/1.1 ones, and TLS ones are dialed by DialTLSContext.
	var p http.Protocols
	p.SetHTTP1(true)
	alpn := []string{"http/1.1"}
	if proto == protoAuto {
		p.SetHTTP2(true)
		alpn = []string{"h2", "http/1.1"}
	}
	t := &http.Transport{
		Protocols:           &p,
		MaxIdleConnsPerHost: c.s.MaxConnsPerEndpoint,
		MaxConnsPerHost:     c.s.MaxConnsPerEndpoint,
		IdleConnTimeout:     c.s.IdleTimeout,
		DisableCompression:  true, // forward what the upstream sent
		// Response headers bounded like the HTTP/1.1 pool's.
		MaxResponseHeaderBytes: responseReadBuffer,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return e.dialContext(ctx)
		},
		HTTP2: &http.HTTP2Config{
			// A stream that stops reading does not stall its connection's
			// other streams for ever.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	if c.tls != nil {
		cfg := c.tls.Clone()
		cfg.NextProtos = alpn
		t.TLSClientConfig = cfg
		t.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := e.dialContext(ctx)
			if err != nil {
				return nil, err
			}
			if proto != protoHTTP1 {
				// net/http's HTTP/2 client writes a request's HEADERS and
				// DATA in separate syscalls: batch them, and those of the
				// connection's other streams, under TLS's records.
				conn = coalesce.Wrap(conn, 0)
			}
			tc := tls.Client(conn, cfg)
			hctx, cancel := context.WithTimeout(ctx, c.s.ConnectTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				_ = conn.Close()
				return nil, &DialError{Addr: e.addr, Err: err}
			}
			return tc, nil
		}
	}
	st.t[proto] = t
	return t
}

// h2Transport is weft's HTTP/2 client for a cluster whose protocol is
// http2: its connections dial through the endpoint (breakers, connect
// timeout, mTLS with ALPN h2), their writes coalesced.
func (e *Endpoint) h2Transport() *h2client.Transport {
	c := e.c
	var tlsCfg *tls.Config
	if c.tls != nil {
		tlsCfg = c.tls.Clone()
		tlsCfg.NextProtos = []string{"h2"}
	}
	return h2client.New(h2client.Config{
		MaxConns:               c.s.MaxConnsPerEndpoint,
		IdleTimeout:            c.s.IdleTimeout,
		MaxResponseHeaderBytes: responseReadBuffer,
		// A stream that stops reading does not stall its connection's
		// other streams for ever.
		PingAfter:   30 * time.Second,
		PingTimeout: 15 * time.Second,
		// A stream the server did not process goes again on another
		// connection, counted as the HTTP/1.1 pool's re-sends are.
		Resent: func() { c.stats.PooledConnRetries.Add(1) },
		Dial: func(ctx context.Context) (net.Conn, error) {
			conn, err := e.dialContext(ctx)
			if err != nil {
				return nil, err
			}
			conn = coalesce.Wrap(conn, 0)
			if tlsCfg == nil {
				return conn, nil
			}
			tc := tls.Client(conn, tlsCfg)
			hctx, cancel := context.WithTimeout(ctx, c.s.ConnectTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				_ = conn.Close()
				return nil, &DialError{Addr: e.addr, Err: err}
			}
			if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
				_ = tc.Close()
				return nil, &DialError{Addr: e.addr, Err: fmt.Errorf("the upstream did not negotiate h2 by ALPN (got %q); set the cluster's protocol to auto or http1", p)}
			}
			return tc, nil
		},
	})
}

// dialContext opens a connection through the endpoint's dial (breakers,
// connect timeout, counting), bounded also by ctx.
func (e *Endpoint) dialContext(ctx context.Context) (net.Conn, error) {
	timeout := time.Duration(0)
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
		if timeout <= 0 {
			return nil, &DialError{Addr: e.addr, Err: context.DeadlineExceeded}
		}
	}
	return e.dialCtx(ctx, e.addr, timeout)
}

func (e *Endpoint) closeStreamTransports() {
	e.streams.mu.Lock()
	defer e.streams.mu.Unlock()
	for _, t := range e.streams.t {
		if t != nil {
			t.CloseIdleConnections()
		}
	}
}

// doStream sends a buffered fasthttp request through the streaming
// transport (an HTTP/1.1 downstream calling an HTTP/2 cluster) and reads
// the whole answer into resp, trailers appended as headers.
func (e *Endpoint) doStream(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	var body io.Reader = http.NoBody
	if b := req.Body(); len(b) > 0 {
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, string(req.Header.Method()), "http://"+e.addr+string(req.RequestURI()), body)
	if err != nil {
		return err
	}
	hr.Host = string(req.Header.Host())
	hr.ContentLength = int64(len(req.Body()))
	for k, v := range req.Header.All() {
		switch string(k) {
		case "Host", "Content-Length", "Connection", "Transfer-Encoding":
			continue
		}
		hr.Header.Add(string(k), string(v))
	}
	hresp, err := e.roundTrip(hr, false, nil)
	if err != nil {
		return err
	}
	defer hresp.Body.Close()
	resp.Reset()
	resp.SetStatusCode(hresp.StatusCode)
	for k, vs := range hresp.Header {
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	b, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBodyBytes+1))
	if err != nil {
		return classifyStreamErr(ctx, err)
	}
	if len(b) > maxResponseBodyBytes {
		return fasthttp.ErrBodyTooLarge
	}
	resp.SetBodyRaw(b)
	for k, vs := range hresp.Trailer {
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	return nil
}

// roundTripStream sends a fasthttp request through the streaming
// transport (an HTTP/1.1 downstream calling an HTTP/2 cluster) and leaves
// the answer's status and headers in resp. The body is sent from body
// (size bytes, -1 unknown) or, when body is nil, from req; the answer's
// body is returned still streaming (nil when it is empty), its trailers
// appended to resp's headers at its end, as DoStream's HTTP/1.1 bodies do.
// deadline bounds the wait for the response headers only, and perTry (0:
// none) that wait from when the request was written whole on a connection
// (pertry.go); then the body may be silent for the cluster's idle_timeout
// between reads.
func (e *Endpoint) roundTripStream(req *fasthttp.Request, body io.Reader, size int, resp *fasthttp.Response, deadline time.Time, perTry time.Duration) (ResponseBody, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	var headerTimer *time.Timer
	if !deadline.IsZero() {
		headerTimer = time.AfterFunc(time.Until(deadline), func() { cancel(fasthttp.ErrTimeout) })
	}
	var tt *TryTimer
	if perTry > 0 {
		tt = NewTryTimer(perTry, func() { cancel(fasthttp.ErrTimeout) })
	}
	var rd io.Reader = http.NoBody
	length := int64(0)
	var sent *sentBody
	switch {
	case body != nil && size != 0:
		sent = &sentBody{r: body, done: make(chan struct{})}
		rd, length = sent, int64(size)
	case len(req.Body()) > 0:
		rd, length = bytes.NewReader(req.Body()), int64(len(req.Body()))
	}
	hr, err := http.NewRequestWithContext(ctx, string(req.Header.Method()), "http://"+e.addr+string(req.RequestURI()), rd)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	hr.Host = string(req.Header.Host())
	hr.ContentLength = length
	if sent != nil && size < 0 {
		// A chunked body may end with trailers (read into req's header
		// with its last chunk): they go upstream as a trailers HEADERS
		// frame. A non-nil Trailer keeps the body's last DATA frame open
		// for them; the transport reads the map once the body has ended.
		hr.Trailer = http.Header{}
		sent.trailers, sent.from = hr.Trailer, &req.Header
	}
	for k, v := range req.Header.All() {
		switch strings.ToLower(string(k)) {
		case "host", "content-length", "connection", "transfer-encoding", "keep-alive", "proxy-connection", "upgrade":
			continue
		}
		hr.Header.Add(string(k), string(v))
	}
	hresp, err := e.roundTrip(hr, false, tt)
	if sent != nil {
		// Half duplex, as on HTTP/1.1 upstreams: the answer goes on once
		// the transport is done with the body (sent, or closed when the
		// try failed or the upstream answered without it), so the body
		// and its filters are never read again after the caller moved on.
		<-sent.done
	}
	late := headerTimer != nil && !headerTimer.Stop()
	if tt != nil && tt.Stop() {
		late = true
	}
	if late && err == nil {
		// The deadline passed as the headers arrived: the try timed out.
		_ = hresp.Body.Close()
		hresp, err = nil, fasthttp.ErrTimeout
	}
	if err != nil {
		cancel(nil)
		if errors.Is(context.Cause(ctx), fasthttp.ErrTimeout) {
			return nil, fasthttp.ErrTimeout
		}
		return nil, err
	}
	resp.Reset()
	resp.Header.SetNoDefaultContentType(true)
	resp.Header.DisableNormalizing()
	resp.SetStatusCode(hresp.StatusCode)
	for k, vs := range hresp.Header {
		lk := strings.ToLower(k)
		for _, v := range vs {
			resp.Header.Add(lk, v)
		}
	}
	if req.Header.IsHead() || hresp.ContentLength == 0 {
		_ = hresp.Body.Close()
		cancel(nil)
		addTrailers(&resp.Header, hresp.Trailer)
		return nil, nil
	}
	if hresp.ContentLength > 0 {
		resp.Header.SetContentLength(int(hresp.ContentLength))
	}
	b := &h2Body{resp: hresp, h: &resp.Header, cancel: cancel, idle: e.c.s.IdleTimeout, e: e}
	if b.idle > 0 {
		b.timer = time.AfterFunc(b.idle, func() { cancel(ErrBodyIdle) })
	}
	return b, nil
}

// sentBody is a streamed request body handed to net/http's transport,
// which reads it on a goroutine of its own and closes it when done, maybe
// while a Read waits for the client. done is closed once the body ended or
// was closed and no Read is running.
type sentBody struct {
	r io.Reader
	// trailers is filled from from's trailer section when the body ends
	// (nil: the body is not chunked).
	trailers http.Header
	from     *fasthttp.RequestHeader
	mu       sync.Mutex // held by a running Read
	reading  atomic.Bool
	closed   atomic.Bool
	done     chan struct{}
	once     sync.Once
}

// errSentBodyClosed is a Read after the transport closed the body.
var errSentBodyClosed = errors.New("request body: closed by the transport")

func (b *sentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, errSentBodyClosed
	}
	b.reading.Store(true)
	n, err := b.r.Read(p)
	b.reading.Store(false)
	if err == io.EOF && b.from != nil {
		for k, v := range httpheader.RequestTrailers(b.from) {
			b.trailers.Add(string(k), string(v))
		}
		b.from = nil
	}
	if err != nil {
		b.once.Do(func() { close(b.done) })
	}
	return n, err
}

// Close ends the body; a Read waiting for the client is cut short when the
// body can be aborted (interface{ Abort() }), and waited for.
func (b *sentBody) Close() error {
	b.closed.Store(true)
	if b.reading.Load() {
		if a, ok := b.r.(interface{ Abort() }); ok {
			a.Abort()
		}
	}
	b.mu.Lock()
	b.once.Do(func() { close(b.done) })
	b.mu.Unlock()
	return nil
}

// addTrailers puts an HTTP/2 answer's trailers in h as trailers (sent
// after a chunked body), as ReadTrailer does for an HTTP/1.1 one.
func addTrailers(h *fasthttp.ResponseHeader, t http.Header) {
	for k, vs := range t {
		lk := strings.ToLower(k)
		if h.AddTrailer(lk) != nil {
			continue // a field that may not be a trailer
		}
		for _, v := range vs {
			h.Add(lk, v)
		}
	}
}

// h2Body is an HTTP/2 upstream answer's body streaming to an HTTP/1.1
// client.
type h2Body struct {
	resp   *http.Response
	h      *fasthttp.ResponseHeader
	cancel context.CancelCauseFunc
	e      *Endpoint
	idle   time.Duration
	timer  *time.Timer // fires after idle without a read returning
	last   time.Time
	eof    bool
}

func (b *h2Body) ContentLength() int {
	if b.resp.ContentLength < 0 {
		return -1
	}
	return int(b.resp.ContentLength)
}

func (b *h2Body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.timer != nil {
		// Push the idle deadline ahead once a tenth of it has passed.
		if now := time.Now(); now.Sub(b.last) > b.idle/10 {
			b.last = now
			b.timer.Reset(b.idle)
		}
	}
	n, err := b.resp.Body.Read(p)
	if err == io.EOF {
		b.eof = true
		addTrailers(b.h, b.resp.Trailer)
		return n, io.EOF
	}
	if err != nil && errors.Is(context.Cause(b.resp.Request.Context()), ErrBodyIdle) {
		err = ErrBodyIdle
	}
	return n, err
}

func (b *h2Body) Close() error {
	if b.e == nil {
		return nil
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.resp.Body.Close()
	b.cancel(nil)
	b.e.done()
	b.e = nil
	return err
}
