package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/coalesce"
)

// The HTTP/2 codec of a listener. Every http listener speaks HTTP/1.1 and
// HTTP/2 on the same port, decided per connection with no config: over
// TLS by ALPN ("h2" or "http/1.1"); in plaintext by the client's first
// bytes (the HTTP/2 connection preface means h2c with prior knowledge), or
// by an HTTP/1.1 request asking to Upgrade to h2c. HTTP/1.1 connections go
// to fasthttp (the fast path) untouched; HTTP/2 connections are served by
// weft's own HTTP/2 server (h2server.go: one reader goroutine per
// connection, handlers on reused workers), or, when the listener's
// http2.server says "x/net", by golang.org/x/net/http2 (one goroutine per
// stream); either hands each stream to the proxy's stream handler.

// preface is what every HTTP/2 client sends first (RFC 9113 §3.4).
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// H2Options turn HTTP/2 on for a listener.
type H2Options struct {
	// Handler serves each HTTP/2 stream. The request's context carries the
	// connection's facts (ConnInfoFrom).
	Handler http.Handler
	// Settings are the listener's http2 config (defaults applied).
	Settings config.HTTP2
	// Stats count what the codec refuses (nil: not counted).
	Stats *H2Stats
}

// H2Stats counts HTTP/2 connections and protocol errors.
type H2Stats struct {
	Connections atomic.Int64 // HTTP/2 connections accepted
	Upgrades    atomic.Int64 // of which h2c via Upgrade
	Errors      atomic.Int64 // protocol errors the codec answered (GOAWAY/RST_STREAM)
}

// ConnInfo is what an HTTP/2 stream knows of its connection.
type ConnInfo struct {
	ID     uint64
	Local  net.Addr
	Remote net.Addr
	TLS    *filter.TLSInfo // nil in plaintext
}

type connInfoKey struct{}

// WithConnInfo returns ctx carrying ci, for a request served as an HTTP/2
// stream that came another way (a gRPC-Web call over HTTP/1.1).
func WithConnInfo(ctx context.Context, ci *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// ConnInfoFrom returns the connection facts of an HTTP/2 stream's request.
func ConnInfoFrom(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*ConnInfo)
	return ci
}

// h2codec serves a listener's HTTP/2 connections.
type h2codec struct {
	srv     *http2.Server
	base    *http.Server
	handler http.Handler
	workers *warmStacks // handler, whose idle workers stop on shutdown
	stats   *H2Stats
	log     *zap.Logger
	// idFloor numbers HTTP/2 connections apart from fasthttp's.
	nextID atomic.Uint64

	// weft's own server (h2server.go), unless x/net's was asked for.
	weft      bool
	cfg       *h2config
	h2workers *h2workers
	weftConns map[*h2conn]struct{}

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// track adds (or removes) a connection weft's server serves, for drain.
func (c *h2codec) track(sc *h2conn, add bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if add {
		c.weftConns[sc] = struct{}{}
		if c.closing {
			go sc.drain() // shutdown began as it was accepted
		}
	} else {
		delete(c.weftConns, sc)
	}
}

func newH2Codec(o *H2Options, lim config.Limits, log *zap.Logger) *h2codec {
	s := o.Settings
	srv := &http2.Server{
		MaxConcurrentStreams:         uint32(orInt(s.MaxConcurrentStreams, 250)),
		MaxUploadBufferPerStream:     int32(orInt(s.InitialStreamWindowSize, 1<<20)),
		MaxUploadBufferPerConnection: int32(orInt(s.InitialConnectionWindowSize, 4<<20)),
		IdleTimeout:                  orDur(lim.IdleTimeout.D(), DefaultIdleTimeout),
		ReadIdleTimeout:              s.KeepaliveInterval.D(),
		PingTimeout:                  s.KeepaliveTimeout.D(),
		// A peer that stops reading is cut off, not waited on forever.
		WriteByteTimeout: orDur(lim.WriteTimeout.D(), DefaultWriteTimeout),
	}
	workers := newWarmStacks(stallGuard{o.Handler, srv.WriteByteTimeout})
	c := &h2codec{srv: srv, handler: workers, workers: workers, stats: o.Stats, log: log, conns: make(map[net.Conn]struct{})}
	c.weft = s.Server != config.H2ServerXNet
	c.cfg = &h2config{ // the same values as srv's
		maxStreams:    uint32(orInt(s.MaxConcurrentStreams, 250)),
		streamWindow:  int64(orInt(s.InitialStreamWindowSize, 1<<20)),
		connWindow:    int64(orInt(s.InitialConnectionWindowSize, 4<<20)),
		maxHeaderList: uint32(orInt(s.MaxHeaderListSize, orInt(lim.MaxHeaderBytes, DefaultMaxHeaderBytes))),
		idleTimeout:   orDur(lim.IdleTimeout.D(), DefaultIdleTimeout),
		pingAfter:     s.KeepaliveInterval.D(),
		pingTimeout:   orDur(s.KeepaliveTimeout.D(), 20*time.Second),
		writeTimeout:  orDur(lim.WriteTimeout.D(), DefaultWriteTimeout),
	}
	c.h2workers = newH2Workers(o.Handler)
	c.weftConns = make(map[*h2conn]struct{})
	if c.stats == nil {
		c.stats = &H2Stats{}
	}
	srv.CountError = func(string) { c.stats.Errors.Add(1) }
	c.base = &http.Server{
		MaxHeaderBytes: orInt(s.MaxHeaderListSize, orInt(lim.MaxHeaderBytes, DefaultMaxHeaderBytes)),
	}
	if l, err := zap.NewStdLogAt(log, zap.DebugLevel); err == nil {
		c.base.ErrorLog = l // per-connection protocol errors are not news
	}
	// Registers the graceful shutdown (GOAWAY to every connection served
	// with base as its BaseConfig) on base.Shutdown.
	_ = http2.ConfigureServer(c.base, srv)
	c.nextID.Store(1 << 62)
	return c
}

// serve runs one HTTP/2 connection to its end. upgrade is the h2c Upgrade
// request (nil otherwise) with its decoded HTTP2-Settings.
func (c *h2codec) serve(conn net.Conn, tlsInfo *filter.TLSInfo, upgrade *http.Request, settings []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		_ = conn.Close()
		return
	}
	c.conns[conn] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
		c.wg.Done()
	}()
	c.stats.Connections.Add(1)
	ci := &ConnInfo{ID: c.nextID.Add(1), Local: conn.LocalAddr(), Remote: conn.RemoteAddr(), TLS: tlsInfo}
	ctx := context.WithValue(context.Background(), connInfoKey{}, ci)
	if upgrade != nil {
		upgrade = upgrade.WithContext(ctx) // stream 1 knows its connection too
	}
	// Frames written on this connection leave in batches (x/net/http2
	// flushes after nearly every frame).
	if c.weft {
		c.serveWeft(newFrameGuard(coalesce.Wrap(conn, c.cfg.writeTimeout)), ctx, upgrade, settings)
		return
	}
	c.srv.ServeConn(newFrameGuard(coalesce.Wrap(conn, c.srv.WriteByteTimeout)), &http2.ServeConnOpts{
		Context: ctx, BaseConfig: c.base, Handler: c.handler,
		UpgradeRequest: upgrade, Settings: settings,
	})
}

// shutdown sends GOAWAY on every connection, lets their streams finish
// until ctx ends, then closes what is left.
func (c *h2codec) shutdown(ctx context.Context) {
	c.mu.Lock()
	c.closing = true
	weftConns := make([]*h2conn, 0, len(c.weftConns))
	for sc := range c.weftConns {
		weftConns = append(weftConns, sc)
	}
	c.mu.Unlock()
	defer c.workers.stop()
	defer c.h2workers.stop()
	for _, sc := range weftConns {
		sc.drain() // GOAWAY: streams in flight finish
	}
	sctx, cancel := context.WithCancel(ctx)
	cancel() // base serves no listener: Shutdown only runs the GOAWAY hooks
	_ = c.base.Shutdown(sctx)
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	c.mu.Lock()
	for conn := range c.conns {
		_ = conn.Close()
	}
	weftConns = weftConns[:0]
	for sc := range c.weftConns {
		weftConns = append(weftConns, sc)
	}
	c.mu.Unlock()
	for _, sc := range weftConns {
		sc.close(errors.New("http2: drain timed out")) // its streams end
	}
	<-done
}

// newH2Listener sits between the socket (TLS-wrapped or not) and
// fasthttp: it hands HTTP/2 connections to the codec and the rest to
// fasthttp. Each connection is classified in its own goroutine, bounded by
// the read timeout, never in the accept loop.
func newH2Listener(ln net.Listener, codec *h2codec, readTimeout time.Duration) net.Listener {
	return newHandoff(ln, func(h *handoff, c net.Conn) {
		go codec.classify(h, c, readTimeout)
	})
}

// classify decides a connection's protocol: ALPN over TLS, the preface in
// plaintext. HTTP/2 connections are served here; the rest go to h.
func (codec *h2codec) classify(h *handoff, c net.Conn, readTimeout time.Duration) {
	deadline := time.Now().Add(readTimeout)
	if tc, ok := c.(*TLSConn); ok {
		_ = tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			// x/net/http2 checks the TLS state through *tls.Conn.
			codec.serve(tc.Conn, tc.TLSInfo(), nil, nil)
			return
		}
		h.deliver(c)
		return
	}
	_ = c.SetReadDeadline(deadline)
	var buf [len(preface)]byte
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if !bytes.HasPrefix([]byte(preface), buf[:n]) {
			break // not HTTP/2: the bytes so far go to fasthttp
		}
		if err != nil {
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, prefix: append([]byte(nil), buf[:n]...)}
	if n == len(preface) && string(buf[:]) == preface {
		var tlsInfo *filter.TLSInfo
		if ti, ok := c.(TLSInfoer); ok {
			tlsInfo = ti.TLSInfo()
		}
		codec.serve(pc, tlsInfo, nil, nil)
		return
	}
	h.deliver(pc)
}

// prefixConn gives back the bytes read to classify the connection (the
// first byte of a permissive TLS listener's connection, the start of a
// would-be HTTP/2 preface).
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// TLSInfo passes through the wrapped connection's TLS facts.
func (c *prefixConn) TLSInfo() *filter.TLSInfo {
	if ti, ok := c.Conn.(TLSInfoer); ok {
		return ti.TLSInfo()
	}
	return nil
}

// CloseWrite half-closes the wrapped connection.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// h2cUpgrade takes over an HTTP/1.1 request asking to switch to h2c (RFC
// 7540 §3.2): a request with no body, "Upgrade: h2c", one HTTP2-Settings
// header and both named in Connection. It answers 101, then serves the
// connection as HTTP/2 with the request as stream 1. Anything else (a
// body, TLS, a bad settings value) is served as HTTP/1.1, which the RFC
// allows: a server may ignore Upgrade.
func (c *h2codec) h2cUpgrade(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if ctx.IsTLS() || !bytes.EqualFold(h.Peek("Upgrade"), []byte("h2c")) {
		return false
	}
	conn := h.Peek("Connection")
	if !tokenListHas(conn, "upgrade") || !tokenListHas(conn, "http2-settings") {
		return false
	}
	raw := h.Peek("Http2-Settings")
	settings, err := base64.RawURLEncoding.DecodeString(string(bytes.TrimRight(raw, "=")))
	// The length first: a streamed body (chunked, -1) must not be read
	// whole just to see it is there.
	if err != nil || len(settings)%6 != 0 || h.ContentLength() > 0 || h.ContentLength() == -1 || len(ctx.Request.Body()) > 0 {
		return false
	}
	req, err := http.NewRequest(string(h.Method()), string(ctx.Request.URI().FullURI()), http.NoBody)
	if err != nil {
		return false
	}
	req.RequestURI = string(h.RequestURI())
	req.Host = string(h.Host())
	for k, v := range h.All() {
		switch string(bytes.ToLower(k)) {
		case "upgrade", "connection", "http2-settings", "host", "content-length", "transfer-encoding", "keep-alive", "proxy-connection":
			continue
		}
		req.Header.Add(string(k), string(v))
	}
	req.RemoteAddr = ctx.RemoteAddr().String()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(hc net.Conn) {
		if _, err := hc.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")); err != nil {
			return
		}
		c.stats.Upgrades.Add(1)
		dc := &detachConn{c: hc, local: hc.LocalAddr(), remote: hc.RemoteAddr()}
		defer dc.detach()
		c.serve(dc, nil, req, settings)
	})
	return true
}

// detachConn hands a hijacked connection to x/net/http2 for no longer
// than the hijack handler runs. fasthttp reuses its hijacked-connection
// object once the handler returns, but ServeConn may return while one of
// its frame-writing goroutines still holds the connection (to set a write
// deadline, or write): without this, that goroutine would reach whatever
// connection the object was reused for. detach closes the connection,
// waits for calls in flight and makes later ones fail.
type detachConn struct {
	mu            sync.RWMutex
	c             net.Conn // nil once detached
	local, remote net.Addr
}

func (d *detachConn) do(f func(net.Conn) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.c == nil {
		return net.ErrClosed
	}
	return f(d.c)
}

func (d *detachConn) detach() {
	d.mu.RLock()
	c := d.c
	d.mu.RUnlock()
	if c != nil {
		_ = c.Close() // ends reads and writes in flight
	}
	d.mu.Lock()
	d.c = nil
	d.mu.Unlock()
}

func (d *detachConn) Read(b []byte) (n int, err error) {
	err = d.do(func(c net.Conn) error { n, err = c.Read(b); return err })
	return n, err
}

func (d *detachConn) Write(b []byte) (n int, err error) {
	err = d.do(func(c net.Conn) error { n, err = c.Write(b); return err })
	return n, err
}

func (d *detachConn) Close() error { return d.do(net.Conn.Close) }

func (d *detachConn) LocalAddr() net.Addr  { return d.local }
func (d *detachConn) RemoteAddr() net.Addr { return d.remote }

func (d *detachConn) SetDeadline(t time.Time) error {
	return d.do(func(c net.Conn) error { return c.SetDeadline(t) })
}

func (d *detachConn) SetReadDeadline(t time.Time) error {
	return d.do(func(c net.Conn) error { return c.SetReadDeadline(t) })
}

func (d *detachConn) SetWriteDeadline(t time.Time) error {
	return d.do(func(c net.Conn) error { return c.SetWriteDeadline(t) })
}

// tokenListHas reports whether a comma-separated header value lists tok
// (case-insensitively).
func tokenListHas(v []byte, tok string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(tok)) {
			return true
		}
	}
	return false
}

// alpnSelect wraps a TLS selector so the configs it returns offer h2 and
// http/1.1 by ALPN. The clone is made once per distinct config.
func alpnSelect(sel TLSSelector) TLSSelector {
	var mu sync.Mutex
	var in, out *tls.Config
	return func() (string, *tls.Config) {
		mode, cfg := sel()
		if cfg == nil {
			return mode, nil
		}
		mu.Lock()
		defer mu.Unlock()
		if cfg != in {
			in, out = cfg, cfg.Clone()
			out.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
		}
		return mode, out
	}
}

// maxEmptyContinuations is how many empty CONTINUATION frames one header
// block may carry. x/net/http2 bounds a header block by its bytes, so a
// flood of CONTINUATION frames that carry some is cut; empty ones cost
// nothing against that budget and would be read forever.
const maxEmptyContinuations = 16

// frameGuard watches the frames a client sends, ahead of x/net/http2's
// framer, and ends the connection (GOAWAY ENHANCE_YOUR_CALM) on a flood of
// empty CONTINUATION frames.
type frameGuard struct {
	net.Conn
	skip  int     // preface bytes still to pass
	hdr   [9]byte // the frame header being read
	hdrN  int
	left  int // payload bytes of the current frame still to pass
	empty int // empty CONTINUATION frames in the current header block
}

func newFrameGuard(c net.Conn) net.Conn {
	g := &frameGuard{Conn: c, skip: len(preface)}
	if _, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return &tlsFrameGuard{g}
	}
	return g
}

func (g *frameGuard) Read(b []byte) (int, error) {
	n, err := g.Conn.Read(b)
	p := b[:n]
	for len(p) > 0 {
		switch {
		case g.skip > 0:
			k := min(g.skip, len(p))
			g.skip -= k
			p = p[k:]
		case g.left > 0:
			k := min(g.left, len(p))
			g.left -= k
			p = p[k:]
		default:
			k := copy(g.hdr[g.hdrN:], p)
			g.hdrN += k
			p = p[k:]
			if g.hdrN < len(g.hdr) {
				continue
			}
			g.hdrN = 0
			g.left = int(g.hdr[0])<<16 | int(g.hdr[1])<<8 | int(g.hdr[2])
			typ, flags := http2.FrameType(g.hdr[3]), http2.Flags(g.hdr[4])
			if typ != http2.FrameContinuation || flags.Has(http2.FlagContinuationEndHeaders) {
				g.empty = 0
			} else if g.left == 0 {
				if g.empty++; g.empty > maxEmptyContinuations {
					return 0, http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
				}
			}
		}
	}
	return n, err
}

// tlsFrameGuard keeps the TLS state visible: x/net/http2 checks it.
type tlsFrameGuard struct{ *frameGuard }

func (g *tlsFrameGuard) ConnectionState() tls.ConnectionState {
	return g.Conn.(interface{ ConnectionState() tls.ConnectionState }).ConnectionState()
}

// stallGuard cuts a stream whose client does not take the response: a
// write (or flush) that makes no progress for the listener's
// write_timeout resets the stream, and so does the final one after the
// handler returns. WriteByteTimeout covers a client that stops reading its
// socket; this covers one that keeps its HTTP/2 flow-control window shut,
// which would otherwise hold the stream, its handler and its upstream
// forever.
//
// Each x/net write deadline change is a message to the connection's serve
// loop and a timer; setting and clearing one around every write cost a
// unary gRPC answer seven of them. So the guard keeps one timer of its
// own per stream, armed while writes go on, and only a stalled write
// turns into a deadline (one in the past: x/net resets the stream at once).
type stallGuard struct {
	h       http.Handler
	timeout time.Duration
}

// stallChunk is how much is written under one check: the timeout bounds a
// stall, not the time a large body takes.
const stallChunk = 16 << 10

func (g stallGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: g.timeout}
	defer func() {
		sw.mu.Lock()
		sw.done = true
		if sw.timer != nil {
			sw.timer.Stop()
		}
		sw.mu.Unlock()
		// What the handler left buffered is written after it returns:
		// under a deadline too (x/net stops it when the stream closes).
		_ = sw.rc.SetWriteDeadline(time.Now().Add(g.timeout))
	}()
	g.h.ServeHTTP(sw, r)
}

type stallWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration

	mu      sync.Mutex
	timer   *time.Timer // armed while a write may be going on
	armed   bool
	busy    int    // writes in progress
	seq     uint64 // counts write starts and ends: progress
	checked uint64 // seq when the timer was armed
	done    bool
}

// begin and end bracket one write.
func (w *stallWriter) begin() {
	w.mu.Lock()
	w.busy++
	w.seq++
	if !w.armed && !w.done {
		w.armed, w.checked = true, w.seq
		if w.timer == nil {
			w.timer = time.AfterFunc(w.timeout, w.check)
		} else {
			w.timer.Reset(w.timeout)
		}
	}
	w.mu.Unlock()
}

func (w *stallWriter) end() {
	w.mu.Lock()
	w.busy--
	w.seq++
	w.mu.Unlock()
}

// check runs when the timer fires: a write that began before it was armed
// and has not ended since has stalled for a whole timeout.
func (w *stallWriter) check() {
	w.mu.Lock()
	stalled := w.busy > 0 && w.seq == w.checked && !w.done
	if w.busy > 0 && !stalled && !w.done {
		w.checked = w.seq
		w.timer.Reset(w.timeout) // writes go on: watch the next window
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	if stalled {
		_ = w.rc.SetWriteDeadline(time.Unix(1, 0)) // x/net resets the stream now
	}
}

func (w *stallWriter) Write(p []byte) (n int, err error) {
	for len(p) > 0 {
		w.begin()
		m, err := w.ResponseWriter.Write(p[:min(len(p), stallChunk)])
		w.end()
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

func (w *stallWriter) FlushError() error {
	w.begin()
	defer w.end()
	return w.rc.Flush()
}

func (w *stallWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach x/net's writer.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// warmStacks runs each stream's handler on a worker goroutine that served
// streams before, instead of on the goroutine x/net/http2 starts per
// stream. Proxying a stream goes deep (filters, routing, net/http's client
// encoding the upstream headers): a new goroutine's stack grew, by copying,
// several times per stream (10% of weft's CPU per gRPC call); a worker's
// stays grown. Workers idle for workerIdle exit, so a burst's pool shrinks
// back.
type warmStacks struct {
	h    http.Handler
	jobs chan *streamJob
	quit chan struct{} // closed when the listener shuts down: idle workers exit
	once sync.Once
}

type streamJob struct {
	w     http.ResponseWriter
	r     *http.Request
	done  chan struct{}
	panic any
}

const workerIdle = 10 * time.Second

var streamJobPool = sync.Pool{New: func() any { return &streamJob{done: make(chan struct{}, 1)} }}

func newWarmStacks(h http.Handler) *warmStacks {
	return &warmStacks{h: h, jobs: make(chan *streamJob), quit: make(chan struct{})}
}

// stop makes idle workers exit; a busy one exits when its stream ends.
func (p *warmStacks) stop() { p.once.Do(func() { close(p.quit) }) }

func (p *warmStacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	j := streamJobPool.Get().(*streamJob)
	j.w, j.r, j.panic = w, r, nil
	select {
	case p.jobs <- j: // an idle worker took it
	case <-p.quit:
		go p.run(j) // shutting down: no worker stays for later streams
	default:
		go p.work(j)
	}
	<-j.done
	pv := j.panic
	j.w, j.r, j.panic = nil, nil, nil
	streamJobPool.Put(j)
	if pv != nil {
		panic(pv) // x/net resets the stream (http.ErrAbortHandler) here
	}
}

func (p *warmStacks) work(j *streamJob) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		p.run(j)
		idle.Reset(workerIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

func (p *warmStacks) run(j *streamJob) {
	defer func() {
		j.panic = recover()
		j.done <- struct{}{}
	}()
	p.h.ServeHTTP(j.w, j.r)
}
