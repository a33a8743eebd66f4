package listener

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/httpheader"
)

// weft's own HTTP/2 server connection, built like its HTTP/2 client
// (proxy/cluster/h2client) on golang.org/x/net/http2's Framer and hpack:
//
//   - one goroutine per connection reads frames (serve) and does all the
//     connection's bookkeeping there: new streams, request bodies into
//     their buffers, SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY;
//   - a stream's handler runs on a reused worker goroutine (h2workers)
//     and writes its own frames, under the connection's write lock, into
//     the coalescing writer (proxy/internal/coalesce): no round trip
//     through a serve loop per frame, and all that the connection's
//     streams write while the drain goroutine waits leaves in one syscall;
//   - flow control both ways: a handler's DATA waits for the client's
//     windows (a wait with no progress for write_timeout resets the
//     stream), and request bodies are credited back as the handler reads
//     them, so a stream nobody reads holds at most its window.
//
// The handler sees a *http.Request and an http.ResponseWriter, the same
// interface x/net/http2's server gives (proxy/stream_h2.go is written
// against it), with the same conventions: trailers by http.TrailerPrefix
// or the Trailer header, Flush to send what was written, a panic (such as
// http.ErrAbortHandler) resets the stream.

// h2config is a codec's HTTP/2 settings, defaults applied, fixed when the
// listener is bound.
type h2config struct {
	maxStreams    uint32
	streamWindow  int64
	connWindow    int64
	maxHeaderList uint32
	idleTimeout   time.Duration
	pingAfter     time.Duration // 0: no keep-alive pings
	pingTimeout   time.Duration
	writeTimeout  time.Duration
}

const (
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1
	// h2MaxFrame is the largest frame weft reads: the protocol's default,
	// which it therefore never advertises.
	h2MaxFrame = 16384
	// h2PendingMax is how much a stream's writes buffer before a frame
	// goes without a Flush.
	h2PendingMax = 16 << 10
	// prefaceTimeout bounds the wait for the client's preface and first
	// SETTINGS.
	prefaceTimeout = 10 * time.Second
)

var (
	errStreamReset  = errors.New("http2: stream reset by the client")
	errStreamClosed = errors.New("http2: stream closed")
	errConnClosed   = errors.New("http2: connection closed")
	errStalled      = errors.New("http2: the client's flow-control window stayed shut for write_timeout")
)

// h2conn is one HTTP/2 connection served by weft.
type h2conn struct {
	codec  *h2codec
	cfg    *h2config
	nc     net.Conn // the coalescing writer (reads pass the frame guard)
	fr     *http2.Framer
	ctx    context.Context // carries ConnInfo
	remote string
	log    *zap.Logger

	// wmu orders writes: the framer's buffer and the HPACK encoder's
	// state (header blocks leave in the order they were encoded).
	wmu    sync.Mutex
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	names  map[string]string // header key as given -> wire name
	values map[string]string // response values, interned (internValue)

	mu       sync.Mutex
	sendCond *sync.Cond // send windows opened, or a stream/the connection ended
	streams  map[uint32]*h2stream
	// maxClientID is the highest stream ID the client opened (or tried
	// to): lower IDs not in streams are closed.
	maxClientID    uint32
	handlers       int // handlers running (reset streams' included)
	sendWindow     int64
	peerInitWindow int64
	peerMaxFrame   int
	recvWindow     int64 // what the client may still send on the connection
	recvUnacked    int64 // read by handlers, not yet credited back
	settingsAcked  bool
	goAwaySent     bool
	noNewStreams   bool // GOAWAY sent or received: close once idle
	closed         bool
	idleSince      time.Time

	handlerWG   sync.WaitGroup
	framesRead  atomic.Uint64
	timer       *time.Timer
	lastFrames  uint64
	lastActive  time.Time
	pingPending atomic.Bool
	pingSentAt  time.Time
}

// h2stream is one request and its response; it is the handler's
// http.ResponseWriter. Fields below mu are guarded by the connection's mu.
type h2stream struct {
	c   *h2conn
	id  uint32
	req *http.Request
	url url.URL // req.URL (one allocation with the stream)
	// fields are the request's regular header fields as they came
	// (RequestFields).
	fields []hpack.HeaderField
	// Response state, used by the handler's goroutine only.
	hdr         http.Header
	status      int
	wroteHeader bool
	sentHeaders bool
	ended       bool // END_STREAM sent (WriteTrailerFields)
	pending     []byte
	pendingBuf  *[]byte // pending's pooled buffer
	handlerDone bool

	readCond sync.Cond // on c.mu: body data, its end, or a reset
	// Guarded by c.mu.
	buf         []byte
	off         int
	recvWindow  int64
	recvUnacked int64
	declaredLen int64 // content-length, -1 if none
	gotLen      int64
	remoteDone  bool // END_STREAM received
	bodyClosed  bool
	trailer     []hpack.HeaderField
	sendWindow  int64
	closed      bool  // reset, or both sides done: out of c.streams
	err         error // why the stream ended early
	stalled     bool
	// The stream is its request's context (context.go's afterFuncer: a
	// child context registers a callback here, not a map entry and not a
	// goroutine). It ends with the stream: reset, connection closed, or
	// the handler returned.
	done       chan struct{} // made when asked for
	ctxErr     error
	afterFuncs []*func()
}

// h2workers runs stream handlers on goroutines that ran handlers before:
// their stacks are already grown (proxying a stream goes deep: filters,
// routing, the upstream client). Workers idle for workerIdle exit.
type h2workers struct {
	h    http.Handler
	jobs chan *h2stream
	quit chan struct{}
	once sync.Once
}

func newH2Workers(h http.Handler) *h2workers {
	return &h2workers{h: h, jobs: make(chan *h2stream), quit: make(chan struct{})}
}

func (p *h2workers) stop() { p.once.Do(func() { close(p.quit) }) }

func (p *h2workers) submit(s *h2stream) {
	select {
	case p.jobs <- s: // an idle worker took it
	default:
		go p.work(s)
	}
}

func (p *h2workers) work(s *h2stream) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.run(p.h)
		idle.Reset(workerIdle)
		select {
		case s = <-p.jobs:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

// serveWeft runs one HTTP/2 connection with weft's server to its end.
// nc is the coalescing, frame-guarded connection; upgrade is the h2c
// Upgrade request (stream 1) and settings its HTTP2-Settings.
func (c *h2codec) serveWeft(nc net.Conn, ctx context.Context, upgrade *http.Request, settings []byte) {
	sc := &h2conn{
		codec:          c,
		cfg:            c.cfg,
		nc:             nc,
		ctx:            ctx,
		remote:         nc.RemoteAddr().String(),
		log:            c.log,
		names:          make(map[string]string),
		values:         make(map[string]string),
		streams:        make(map[uint32]*h2stream),
		sendWindow:     h2DefaultWindow,
		peerInitWindow: h2DefaultWindow,
		peerMaxFrame:   h2MaxFrame,
		recvWindow:     c.cfg.connWindow,
		idleSince:      time.Now(),
		lastActive:     time.Now(),
	}
	sc.sendCond = sync.NewCond(&sc.mu)
	sc.fr = http2.NewFramer(nc, nc)
	sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sc.fr.MaxHeaderListSize = c.cfg.maxHeaderList
	sc.fr.SetMaxReadFrameSize(h2MaxFrame)
	sc.fr.SetReuseFrames()
	sc.henc = hpack.NewEncoder(&sc.hbuf)
	c.track(sc, true)
	defer c.track(sc, false)
	sc.serve(upgrade, settings)
}

// serve reads frames until the connection ends, then waits for its
// handlers.
func (c *h2conn) serve(upgrade *http.Request, settings []byte) {
	defer func() {
		c.close(nil)
		c.handlerWG.Wait()
		c.timer.Stop()
	}()
	c.timer = time.AfterFunc(c.tick(), c.onTimer)
	// Our SETTINGS first (the server's preface), then the connection
	// window beyond the protocol's 64 KiB.
	set := []http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.maxStreams},
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.cfg.streamWindow)},
		{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.maxHeaderList},
	}
	c.wmu.Lock()
	err := c.fr.WriteSettings(set...)
	if err == nil && c.cfg.connWindow > h2DefaultWindow {
		err = c.fr.WriteWindowUpdate(0, uint32(c.cfg.connWindow-h2DefaultWindow))
	}
	c.wmu.Unlock()
	if err != nil {
		return
	}
	if upgrade != nil {
		// RFC 7540 §3.2.1: the HTTP2-Settings header is the client's
		// first SETTINGS; the request is stream 1, half closed (remote).
		if err := c.applySettings(parseSettings(settings)); err != nil {
			c.goAway(errCode(err), err)
			return
		}
		c.mu.Lock()
		c.maxClientID = 1
		s := c.newStream(1, true)
		c.mu.Unlock()
		s.req = upgrade.WithContext(s)
		s.req.RemoteAddr = c.remote
		s.declaredLen = -1
		c.startHandler(s)
	}
	// The client's preface, then its SETTINGS.
	_ = c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	var pre [len(preface)]byte
	if _, err := io.ReadFull(c.nc, pre[:]); err != nil || string(pre[:]) != preface {
		return
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.onReadError(err)
		return
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		c.goAway(http2.ErrCodeProtocol, errors.New("http2: the client's first frame is not SETTINGS"))
		return
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if err := c.onFrame(sf); err != nil {
		c.goAway(errCode(err), err)
		return
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !c.onReadError(err) {
				return
			}
			continue
		}
		c.framesRead.Add(1)
		if err := c.onFrame(f); err != nil {
			c.goAway(errCode(err), err)
			return
		}
	}
}

// errCode is the GOAWAY code for a connection-ending error.
func errCode(err error) http2.ErrCode {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return http2.ErrCode(ce)
	}
	return http2.ErrCodeInternal
}

// onReadError handles a frame the framer refused; it reports whether the
// connection goes on (a stream error resets that stream only).
func (c *h2conn) onReadError(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) {
		c.codec.stats.Errors.Add(1)
		c.mu.Lock()
		if se.StreamID > c.maxClientID && se.StreamID%2 == 1 {
			c.maxClientID = se.StreamID // a stream opened and refused at once
		}
		s := c.streams[se.StreamID]
		c.mu.Unlock()
		if s != nil {
			c.resetStream(s, se.Code, errStreamReset)
		} else {
			c.writeRST(se.StreamID, se.Code)
		}
		return true
	}
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		c.goAway(http2.ErrCode(ce), err)
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize, err)
	default:
		c.close(err) // EOF, a read error, or the connection closed here
	}
	return false
}

// onFrame handles one frame; an error ends the connection (GOAWAY with
// its code).
func (c *h2conn) onFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			c.mu.Lock()
			c.settingsAcked = true
			c.mu.Unlock()
			return nil
		}
		var set []http2.Setting
		_ = f.ForeachSetting(func(s http2.Setting) error { set = append(set, s); return nil })
		if err := c.applySettings(set); err != nil {
			return err
		}
		c.wmu.Lock()
		err := c.fr.WriteSettingsAck()
		c.wmu.Unlock()
		return err
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if f.StreamID > c.maxClientID {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		s := c.streams[f.StreamID]
		c.mu.Unlock()
		if s != nil {
			c.closeStream(s, errStreamReset)
		}
		return nil
	case *http2.PingFrame:
		if f.IsAck() {
			c.pingPending.Store(false)
			return nil
		}
		c.wmu.Lock()
		err := c.fr.WritePing(true, f.Data)
		c.wmu.Unlock()
		return err
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open finish, then the
		// connection closes.
		c.mu.Lock()
		c.noNewStreams = true
		c.mu.Unlock()
		c.closeIfDone()
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // clients do not push
	case *http2.PriorityFrame:
		// Advisory, and deprecated (RFC 9113 §5.3.2); but a stream may
		// not depend on itself (RFC 7540 §5.3.1).
		if f.StreamDep == f.StreamID {
			c.codec.stats.Errors.Add(1)
			c.refuse(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	}
	return nil // unknown frame types are ignored (RFC 9113 §4.1)
}

// parseSettings reads an HTTP2-Settings payload.
func parseSettings(b []byte) []http2.Setting {
	var set []http2.Setting
	for ; len(b) >= 6; b = b[6:] {
		set = append(set, http2.Setting{ID: http2.SettingID(uint16(b[0])<<8 | uint16(b[1])),
			Val: uint32(b[2])<<24 | uint32(b[3])<<16 | uint32(b[4])<<8 | uint32(b[5])})
	}
	return set
}

// applySettings applies the client's settings in order (RFC 9113 §6.5.3).
func (c *h2conn) applySettings(set []http2.Setting) error {
	for _, s := range set {
		if err := s.Valid(); err != nil {
			return err
		}
	}
	c.mu.Lock()
	for _, s := range set {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWindow
			c.peerInitWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > h2MaxWindow {
					c.mu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		}
	}
	c.sendCond.Broadcast()
	c.mu.Unlock()
	for _, s := range set {
		if s.ID == http2.SettingHeaderTableSize {
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
			c.wmu.Unlock()
		}
	}
	return nil
}

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	if f.StreamID == 0 {
		if c.sendWindow+inc > h2MaxWindow {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendWindow += inc
		c.sendCond.Broadcast()
		c.mu.Unlock()
		return nil
	}
	if f.StreamID > c.maxClientID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
	}
	s := c.streams[f.StreamID]
	if s == nil {
		c.mu.Unlock()
		return nil // a closed stream: frames in flight are ignored
	}
	if s.sendWindow+inc > h2MaxWindow {
		c.mu.Unlock()
		c.codec.stats.Errors.Add(1)
		c.resetStream(s, http2.ErrCodeFlowControl, errStreamReset)
		return nil
	}
	s.sendWindow += inc
	c.sendCond.Broadcast()
	c.mu.Unlock()
	return nil
}

// onHeaders opens a stream, or takes a stream's trailers.
func (c *h2conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol) // clients open odd streams
	}
	c.mu.Lock()
	if id <= c.maxClientID {
		s := c.streams[id]
		c.mu.Unlock()
		if s == nil {
			// RFC 9113 §5.1: HEADERS on a closed stream.
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		return c.onTrailers(s, f)
	}
	c.maxClientID = id
	refuse := http2.ErrCode(0)
	switch {
	case f.HasPriority() && f.Priority.StreamDep == id:
		refuse = http2.ErrCodeProtocol // depends on itself (RFC 7540 §5.3.1)
	case c.noNewStreams || c.closed:
		refuse = http2.ErrCodeRefusedStream
	case uint32(len(c.streams)) >= c.cfg.maxStreams:
		// Beyond the limit the client acknowledged, a protocol error;
		// before that it may not have seen it yet.
		refuse = http2.ErrCodeRefusedStream
		if c.settingsAcked {
			refuse = http2.ErrCodeProtocol
		}
	case c.handlers >= 4*int(c.cfg.maxStreams)+16:
		// Streams reset while their handlers still run pile up: the
		// rapid-reset attack (CVE-2023-44487).
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	c.mu.Unlock()
	if refuse != 0 {
		c.codec.stats.Errors.Add(1)
		c.writeRST(id, refuse)
		return nil
	}
	if f.Truncated {
		// The header list is beyond max_header_list_size: 431, not
		// passed on (RFC 6585 §5).
		c.codec.stats.Errors.Add(1)
		c.mu.Lock()
		s := c.newStream(id, f.StreamEnded())
		c.mu.Unlock()
		s.hdr = http.Header{}
		s.status = http.StatusRequestHeaderFieldsTooLarge
		s.wroteHeader = true
		s.endResponse()
		return nil
	}
	c.mu.Lock()
	s := c.newStream(id, f.StreamEnded())
	c.mu.Unlock()
	req, declared, err := c.newRequest(s, f)
	if err != nil {
		c.closeStream(s, errStreamReset)
		c.codec.stats.Errors.Add(1)
		c.writeRST(id, http2.ErrCodeProtocol)
		return nil
	}
	c.mu.Lock()
	s.declaredLen = declared
	c.mu.Unlock()
	if f.StreamEnded() {
		req.Body = http.NoBody
		req.ContentLength = 0
		if declared > 0 {
			c.resetStream(s, http2.ErrCodeProtocol, errStreamReset) // content-length but no body
			return nil
		}
	} else {
		req.Body = (*h2body)(s)
		req.ContentLength = declared
	}
	s.req = req
	c.startHandler(s)
	return nil
}

// refuse resets stream id, open or not.
func (c *h2conn) refuse(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	if s != nil {
		c.resetStream(s, code, errStreamReset)
	} else {
		c.writeRST(id, code)
	}
}

// newStream registers a stream (under c.mu).
func (c *h2conn) newStream(id uint32, ended bool) *h2stream {
	s := &h2stream{c: c, id: id, remoteDone: ended, recvWindow: c.cfg.streamWindow,
		sendWindow: c.peerInitWindow, declaredLen: -1}
	s.readCond.L = &c.mu
	c.streams[id] = s
	return s
}

// Deadline: a stream has none of its own.
func (s *h2stream) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done is closed when the stream ends.
func (s *h2stream) Done() <-chan struct{} {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		if s.ctxErr != nil {
			close(s.done)
		}
	}
	return s.done
}

// Err is context.Canceled once the stream ended.
func (s *h2stream) Err() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.ctxErr
}

// Value is the connection's values (ConnInfo).
func (s *h2stream) Value(key any) any { return s.c.ctx.Value(key) }

// AfterFunc runs f once the stream's context ends (at once if it has);
// stop unregisters it.
func (s *h2stream) AfterFunc(f func()) (stop func() bool) {
	c := s.c
	c.mu.Lock()
	if s.ctxErr != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	fp := &f
	s.afterFuncs = append(s.afterFuncs, fp)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, g := range s.afterFuncs {
			if g == fp {
				s.afterFuncs[i] = nil
				return true
			}
		}
		return false
	}
}

// cancel ends the stream's context.
func (s *h2stream) cancel() {
	c := s.c
	c.mu.Lock()
	if s.ctxErr != nil {
		c.mu.Unlock()
		return
	}
	s.ctxErr = context.Canceled
	if s.done != nil {
		close(s.done)
	}
	fs := s.afterFuncs
	s.afterFuncs = nil
	c.mu.Unlock()
	for _, f := range fs {
		if f != nil {
			(*f)()
		}
	}
}

func (c *h2conn) startHandler(s *h2stream) {
	c.mu.Lock()
	c.handlers++
	c.mu.Unlock()
	c.handlerWG.Add(1)
	c.codec.h2workers.submit(s)
}

// connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// newRequest builds a stream's request from its header block, refusing
// what RFC 9113 §8.3.1 calls malformed. It returns the declared
// content-length (-1: none).
func (c *h2conn) newRequest(s *h2stream, f *http2.MetaHeadersFrame) (*http.Request, int64, error) {
	var method, scheme, authority, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default:
			return nil, 0, fmt.Errorf("pseudo-header %s", hf.Name) // :protocol: extended CONNECT is not offered
		}
	}
	if method == http.MethodConnect {
		if scheme != "" || path != "" || authority == "" {
			return nil, 0, errors.New("CONNECT with :scheme or :path, or without :authority")
		}
	} else if method == "" || scheme == "" || path == "" {
		return nil, 0, errors.New("missing pseudo-headers")
	}
	if method != http.MethodConnect && !strings.HasPrefix(path, "/") && !(path == "*" && method == http.MethodOptions) {
		return nil, 0, errors.New("bad :path")
	}
	regular := f.RegularFields()
	s.fields = regular
	h := make(http.Header, len(regular))
	// One backing array for the values (x/net does the same): a field
	// costs no []string of its own.
	vals := make([]string, len(regular))
	declared := int64(-1)
	for i, hf := range regular {
		if connectionSpecific(hf.Name) || (hf.Name == "te" && hf.Value != "trailers") {
			return nil, 0, fmt.Errorf("connection-specific header %s", hf.Name)
		}
		if hf.Name == "content-length" {
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || (declared >= 0 && n != declared) {
				return nil, 0, errors.New("bad content-length")
			}
			declared = n
		}
		k := httpheader.CanonicalKey(hf.Name)
		if vs := h[k]; len(vs) > 0 {
			h[k] = append(vs, hf.Value)
		} else {
			vals[i] = hf.Value
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if cookies := h["Cookie"]; len(cookies) > 1 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")} // RFC 9113 §8.2.3
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	delete(h, "Host")
	u := &s.url
	if method == http.MethodConnect {
		u.Host = authority
		path = authority
	} else if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
		if q == "" {
			u.ForceQuery = true
		}
	} else {
		u.Path = p
	}
	if strings.Contains(u.Path, "%") {
		pu, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, 0, err
		}
		u = pu
	}
	req := http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       authority,
		RequestURI: path,
		RemoteAddr: c.remote,
	}
	if vs := h["Trailer"]; len(vs) > 0 {
		req.Trailer = make(http.Header)
		for _, v := range vs {
			for _, k := range strings.Split(v, ",") {
				k = http.CanonicalHeaderKey(strings.TrimSpace(k))
				if k != "" && httpguts.ValidTrailerHeader(k) {
					req.Trailer[k] = nil
				}
			}
		}
		delete(h, "Trailer")
	}
	return req.WithContext(s), declared, nil
}

// onTrailers takes an open stream's trailers.
func (c *h2conn) onTrailers(s *h2stream, f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	if s.remoteDone {
		c.mu.Unlock()
		c.codec.stats.Errors.Add(1)
		c.resetStream(s, http2.ErrCodeStreamClosed, errStreamReset)
		return nil
	}
	bad := !f.StreamEnded() || len(f.PseudoFields()) > 0 || f.Truncated ||
		(s.declaredLen >= 0 && s.gotLen != s.declaredLen)
	if !bad {
		s.trailer = f.RegularFields()
		s.remoteDone = true
		s.readCond.Broadcast()
	}
	c.mu.Unlock()
	if bad {
		c.codec.stats.Errors.Add(1)
		c.resetStream(s, http2.ErrCodeProtocol, errStreamReset)
	}
	return nil
}

func (c *h2conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // flow control counts padding too
	c.mu.Lock()
	if id > c.maxClientID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
	}
	if n > c.recvWindow {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	s := c.streams[id]
	if s == nil || s.remoteDone {
		c.mu.Unlock()
		c.credit(nil, n)
		c.codec.stats.Errors.Add(1)
		if s != nil {
			c.resetStream(s, http2.ErrCodeStreamClosed, errStreamReset)
		} else {
			c.writeRST(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	if n > s.recvWindow {
		c.mu.Unlock()
		c.credit(nil, n)
		c.codec.stats.Errors.Add(1)
		c.resetStream(s, http2.ErrCodeFlowControl, errStreamReset)
		return nil
	}
	data := f.Data()
	s.gotLen += int64(len(data))
	end := f.StreamEnded()
	if (s.declaredLen >= 0 && s.gotLen > s.declaredLen) || (end && s.declaredLen >= 0 && s.gotLen != s.declaredLen) {
		c.mu.Unlock()
		c.credit(nil, n)
		c.codec.stats.Errors.Add(1)
		c.resetStream(s, http2.ErrCodeProtocol, errStreamReset)
		return nil
	}
	s.recvWindow -= n
	unread := n
	if !s.bodyClosed {
		s.buf = append(s.buf, data...)
		unread = n - int64(len(data)) // the padding
	}
	if end {
		s.remoteDone = true
	}
	s.readCond.Broadcast()
	c.mu.Unlock()
	if unread > 0 {
		c.credit(s, unread)
	}
	return nil
}

// credit gives n bytes of receive window back to the connection and,
// unless s is nil or done receiving, to s; WINDOW_UPDATEs go once half a
// window was used.
func (c *h2conn) credit(s *h2stream, n int64) {
	var connInc, streamInc uint32
	c.mu.Lock()
	c.recvUnacked += n
	if c.recvUnacked >= c.cfg.connWindow/2 {
		connInc = uint32(c.recvUnacked)
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	if s != nil && !s.remoteDone && !s.closed {
		s.recvUnacked += n
		if s.recvUnacked >= c.cfg.streamWindow/2 {
			streamInc = uint32(s.recvUnacked)
			s.recvWindow += s.recvUnacked
			s.recvUnacked = 0
		}
	}
	closed := c.closed
	c.mu.Unlock()
	if closed || (connInc == 0 && streamInc == 0) {
		return
	}
	c.wmu.Lock()
	if connInc > 0 {
		_ = c.fr.WriteWindowUpdate(0, connInc)
	}
	if streamInc > 0 {
		_ = c.fr.WriteWindowUpdate(s.id, streamInc)
	}
	c.wmu.Unlock()
}

func (c *h2conn) writeRST(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(id, code)
	c.wmu.Unlock()
}

// resetStream sends RST_STREAM and ends the stream.
func (c *h2conn) resetStream(s *h2stream, code http2.ErrCode, err error) {
	if c.closeStream(s, err) {
		c.writeRST(s.id, code)
	}
}

// closeStream takes a stream out of the connection: its handler's reads
// and writes fail with err and its context ends. It reports whether it
// was still open.
func (c *h2conn) closeStream(s *h2stream, err error) bool {
	c.mu.Lock()
	if s.closed {
		c.mu.Unlock()
		return false
	}
	s.closed = true
	if s.err == nil {
		s.err = err
	}
	delete(c.streams, s.id)
	if len(c.streams) == 0 {
		c.idleSince = time.Now()
	}
	unread := int64(len(s.buf) - s.off)
	s.buf, s.off = nil, 0
	s.readCond.Broadcast()
	c.sendCond.Broadcast()
	c.mu.Unlock()
	if unread > 0 {
		c.credit(nil, unread)
	}
	if err != nil {
		s.cancel()
	}
	return true
}

// goAway sends GOAWAY with code and closes the connection.
func (c *h2conn) goAway(code http2.ErrCode, err error) {
	if code != http2.ErrCodeNo {
		c.codec.stats.Errors.Add(1)
		c.log.Debug("http2: connection error", zap.String("remote", c.remote), zap.Stringer("code", code), zap.Error(err))
	}
	c.mu.Lock()
	last := c.maxClientID
	c.goAwaySent, c.noNewStreams = true, true
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.fr.WriteGoAway(last, code, nil)
	c.wmu.Unlock()
	c.close(err)
}

// drain sends GOAWAY (NO_ERROR): no new streams; the connection closes
// once the streams open now have finished.
func (c *h2conn) drain() {
	c.mu.Lock()
	if c.goAwaySent || c.closed {
		c.mu.Unlock()
		return
	}
	c.goAwaySent, c.noNewStreams = true, true
	last := c.maxClientID
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	c.wmu.Unlock()
	c.closeIfDone()
}

// closeIfDone closes a connection that takes no new streams once its
// last stream has ended.
func (c *h2conn) closeIfDone() {
	c.mu.Lock()
	done := c.noNewStreams && len(c.streams) == 0 && c.handlers == 0
	c.mu.Unlock()
	if done {
		c.close(nil)
	}
}

// close ends the connection: every open stream fails.
func (c *h2conn) close(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	streams := make([]*h2stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
	}
	c.sendCond.Broadcast()
	c.mu.Unlock()
	_ = c.nc.Close() // the reader's next read fails: serve returns
	for _, s := range streams {
		c.closeStream(s, errConnClosed)
	}
}

// tick is how often the connection checks for idleness and silence.
func (c *h2conn) tick() time.Duration {
	d := c.cfg.idleTimeout
	if c.cfg.pingAfter > 0 {
		d = min(d, c.cfg.pingAfter, c.cfg.pingTimeout)
	}
	return max(d/2, 100*time.Millisecond)
}

// onTimer closes an idle connection (GOAWAY), a drained one whose streams
// ended, and one whose keep-alive PING went unanswered; it pings a silent
// one.
func (c *h2conn) onTimer() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now := time.Now()
	idle := len(c.streams) == 0 && c.handlers == 0
	if idle && c.noNewStreams {
		c.mu.Unlock()
		c.close(nil)
		return
	}
	if idle && now.Sub(c.idleSince) >= c.cfg.idleTimeout {
		c.mu.Unlock()
		c.goAway(http2.ErrCodeNo, nil)
		return
	}
	if frames := c.framesRead.Load(); frames != c.lastFrames {
		c.lastFrames, c.lastActive = frames, now
	}
	var ping, dead bool
	if c.cfg.pingAfter > 0 {
		switch {
		case c.pingPending.Load():
			dead = now.Sub(c.pingSentAt) >= c.cfg.pingTimeout
		case now.Sub(c.lastActive) >= c.cfg.pingAfter:
			ping = true
			c.pingSentAt = now
			c.pingPending.Store(true)
		}
	}
	c.mu.Unlock()
	if dead {
		c.log.Debug("http2: keep-alive PING not answered", zap.String("remote", c.remote))
		c.close(errors.New("http2: keep-alive PING not answered"))
		return
	}
	if ping {
		c.wmu.Lock()
		_ = c.fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'})
		c.wmu.Unlock()
	}
	c.timer.Reset(c.tick())
}

// run serves the stream on a worker goroutine.
func (s *h2stream) run(h http.Handler) {
	c := s.c
	defer func() {
		c.mu.Lock()
		c.handlers--
		idle := c.handlers == 0 && len(c.streams) == 0
		if idle {
			c.idleSince = time.Now()
		}
		c.mu.Unlock()
		if idle {
			c.closeIfDone()
		}
		c.handlerWG.Done()
	}()
	c.mu.Lock()
	gone := s.closed
	c.mu.Unlock()
	if !gone && s.req != nil {
		if !s.serve(h) {
			return
		}
	}
	s.endResponse()
}

// serve runs the handler; false when it panicked (the stream was reset).
func (s *h2stream) serve(h http.Handler) (ok bool) {
	defer func() {
		if ok {
			return
		}
		p := recover()
		if p != http.ErrAbortHandler {
			s.c.log.Error("http2: handler panic", zap.Any("panic", p), zap.Stack("stack"))
		}
		s.handlerDone = true
		s.c.resetStream(s, http2.ErrCodeInternal, errStreamClosed)
		s.cancel()
	}()
	h.ServeHTTP(s, s.req)
	return true
}

// endResponse sends what the handler left (headers, buffered data,
// trailers) with END_STREAM, and ends the stream: a client still sending
// its body gets RST_STREAM(NO_ERROR) (RFC 9113 §8.1).
func (s *h2stream) endResponse() {
	c := s.c
	s.handlerDone = true
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	var err error
	if !s.ended {
		trailers := s.hasTrailers()
		err = s.flushOut(!trailers)
		if err == nil && trailers {
			err = s.writeHeaderBlock(true, true)
		}
	}
	c.mu.Lock()
	open := !s.closed && !s.remoteDone
	c.mu.Unlock()
	if err == nil && open {
		c.resetStream(s, http2.ErrCodeNo, errStreamClosed)
	}
	c.closeStream(s, nil)
	s.cancel()
	if s.pendingBuf != nil {
		if cap(s.pending) <= h2PendingMax {
			*s.pendingBuf = s.pending[:0]
			pendingPool.Put(s.pendingBuf)
		}
		s.pending, s.pendingBuf = nil, nil
	}
}

// Header is the response header (and trailers, by http.TrailerPrefix).
func (s *h2stream) Header() http.Header {
	if s.hdr == nil {
		s.hdr = make(http.Header, 4)
	}
	return s.hdr
}

// WriteHeader sets the status; the headers leave with the first flush.
func (s *h2stream) WriteHeader(code int) {
	if s.wroteHeader || code < 200 {
		return // interim answers are not sent
	}
	s.wroteHeader = true
	s.status = code
}

// Write buffers p; a full buffer is sent.
func (s *h2stream) Write(p []byte) (int, error) {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	if err := s.streamErr(); err != nil {
		return 0, err
	}
	if s.req != nil && s.req.Method == http.MethodHead {
		return len(p), nil // an answer to HEAD has no body (RFC 9110 §9.3.2)
	}
	if len(s.pending)+len(p) <= h2PendingMax {
		if s.pendingBuf == nil {
			s.pendingBuf = pendingPool.Get().(*[]byte)
			s.pending = (*s.pendingBuf)[:0]
		}
		s.pending = append(s.pending, p...)
		return len(p), nil
	}
	if err := s.flushOut(false); err != nil {
		return 0, err
	}
	if err := s.sendData(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// FlushError sends the headers and what was written so far.
func (s *h2stream) FlushError() error {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	return s.flushOut(false)
}

// Flush is FlushError for http.Flusher.
func (s *h2stream) Flush() { _ = s.FlushError() }

// SetWriteDeadline (for http.ResponseController): a deadline already past
// resets the stream; others are not needed, as a stalled write is cut by
// write_timeout itself.
func (s *h2stream) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && time.Until(t) <= 0 {
		s.c.resetStream(s, http2.ErrCodeCancel, errStalled)
	}
	return nil
}

func (s *h2stream) streamErr() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.closed {
		if s.err != nil {
			return s.err
		}
		return errStreamClosed
	}
	return nil
}

// flushOut sends the headers (if not yet sent) and the buffered data;
// end puts END_STREAM on the last frame.
func (s *h2stream) flushOut(end bool) error {
	if err := s.streamErr(); err != nil {
		return err
	}
	if !s.sentHeaders {
		s.sentHeaders = true
		only := end && len(s.pending) == 0
		if err := s.writeHeaderBlock(false, only); err != nil {
			return err
		}
		if only {
			return nil
		}
	}
	if len(s.pending) == 0 && !end {
		return nil
	}
	err := s.sendData(s.pending, end)
	s.pending = s.pending[:0]
	return err
}

// sendData sends data as DATA frames as the windows allow.
func (s *h2stream) sendData(data []byte, end bool) error {
	c := s.c
	for {
		c.mu.Lock()
		var avail int64
		var stall *time.Timer
		for {
			if s.closed || c.closed {
				err := s.err
				c.mu.Unlock()
				if stall != nil {
					stall.Stop()
				}
				if err == nil {
					err = errConnClosed
				}
				return err
			}
			if s.stalled {
				c.mu.Unlock()
				c.resetStream(s, http2.ErrCodeCancel, errStalled)
				return errStalled
			}
			avail = min(s.sendWindow, c.sendWindow, int64(c.peerMaxFrame))
			if avail > 0 || len(data) == 0 {
				break
			}
			if stall == nil && c.cfg.writeTimeout > 0 {
				stall = time.AfterFunc(c.cfg.writeTimeout, func() {
					c.mu.Lock()
					s.stalled = true
					c.sendCond.Broadcast()
					c.mu.Unlock()
				})
			}
			c.sendCond.Wait()
		}
		take := min(avail, int64(len(data)))
		s.sendWindow -= take
		c.sendWindow -= take
		c.mu.Unlock()
		if stall != nil {
			stall.Stop()
		}
		chunk := data[:take]
		data = data[take:]
		c.wmu.Lock()
		err := c.fr.WriteData(s.id, end && len(data) == 0, chunk)
		c.wmu.Unlock()
		if err != nil {
			c.close(err)
			return err
		}
		if len(data) == 0 {
			return nil
		}
	}
}

var pendingPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// hasTrailers reports whether the handler set trailers: keys with
// http.TrailerPrefix, or declared in a Trailer header.
func (s *h2stream) hasTrailers() bool {
	if len(s.hdr["Trailer"]) > 0 {
		return true
	}
	for k := range s.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// visitTrailers calls emit for each trailer field.
func (s *h2stream) visitTrailers(emit func(k, v string)) {
	for k, vs := range s.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				emit(name, v)
			}
		}
	}
	for _, decl := range s.hdr["Trailer"] {
		for k := range strings.SplitSeq(decl, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			for _, v := range s.hdr[k] {
				emit(k, v)
			}
		}
	}
}

// statusValues are :status values for the codes answers mostly carry.
var statusValues = map[int]string{200: "200", 204: "204", 304: "304", 400: "400", 403: "403", 404: "404",
	431: "431", 500: "500", 502: "502", 503: "503", 504: "504"}

// neverIndexed are response fields whose values differ per answer: sent
// as literals, so the HPACK table keeps the values answers repeat.
func neverIndexed(name string) bool {
	switch name {
	case "content-length", "date", "x-request-id", "traceparent", "tracestate", "grpc-message", "etag", "last-modified", "set-cookie":
		return true
	}
	return false
}

// writeHeaderBlock encodes and sends the response headers, or the
// trailers, with END_STREAM when end.
func (s *h2stream) writeHeaderBlock(trailers, end bool) error {
	c := s.c
	c.mu.Lock()
	maxFrame := c.peerMaxFrame
	c.mu.Unlock()
	c.wmu.Lock()
	c.hbuf.Reset()
	if !trailers {
		st, ok := statusValues[s.status]
		if !ok {
			st = strconv.Itoa(s.status)
		}
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: st})
		for k, vs := range s.hdr {
			if strings.HasPrefix(k, http.TrailerPrefix) {
				continue
			}
			name := c.wireName(k)
			if name == "" || connectionSpecific(name) {
				continue
			}
			for _, v := range vs {
				if (name == "te" && v != "trailers") || !httpguts.ValidHeaderFieldValue(v) {
					continue
				}
				_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: v, Sensitive: neverIndexed(name)})
			}
		}
	} else {
		s.visitTrailers(func(k, v string) {
			name := c.wireName(k)
			if name == "" || connectionSpecific(name) || !httpguts.ValidHeaderFieldValue(v) {
				return
			}
			_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: v, Sensitive: neverIndexed(name)})
		})
	}
	block := c.hbuf.Bytes()
	first := block[:min(len(block), maxFrame)]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: first,
		EndStream: end, EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; err == nil && len(rest) > 0; {
		chunk := rest[:min(len(rest), maxFrame)]
		rest = rest[len(chunk):]
		err = c.fr.WriteContinuation(s.id, len(rest) == 0, chunk)
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
	return err
}

// wireName is a header key as HTTP/2 sends it (lower case), "" when it
// is not a valid name; the lower-cased names are kept per connection
// (bounded). Called under wmu.
func (c *h2conn) wireName(k string) string {
	if n, ok := c.names[k]; ok {
		return n
	}
	n := strings.ToLower(k)
	if !httpguts.ValidHeaderFieldName(n) {
		n = ""
	}
	if len(c.names) < maxInternedNames {
		c.names[k] = n
	}
	return n
}

const maxInternedNames = 256

// RequestFields returns the regular header fields of a request weft's
// HTTP/2 server made, as they came on the wire (lower-case names, in
// order, cookies not joined), when w is that server's own writer for it;
// nil otherwise: the proxy copies them into its own header without going
// through r.Header's canonical keys. A handler that rewrites r.Header
// (gRPC-Web's translation) answers through a writer of its own, so the
// fields, which do not have its edits, are not used for it.
func RequestFields(w http.ResponseWriter, r *http.Request) []hpack.HeaderField {
	if s, ok := w.(*h2stream); ok && r.Context() == context.Context(s) {
		return s.fields
	}
	return nil
}

// WriteHeaderFields sends the response headers now, read from visit
// (names in any case; connection-specific fields and invalid ones are
// dropped), without END_STREAM: the proxy's answers go from its own
// header to the wire with no http.Header in between. It fails once
// headers were written.
func (s *h2stream) WriteHeaderFields(status int, visit func(emit func(name, value []byte))) error {
	if s.wroteHeader {
		return errors.New("http2: response headers already written")
	}
	if err := s.streamErr(); err != nil {
		return err
	}
	s.wroteHeader, s.sentHeaders, s.status = true, true, status
	return s.writeFieldBlock(visit, true, false)
}

// WriteTrailerFields sends what was written and not yet sent, then the
// trailers read from visit with END_STREAM: the answer is complete.
func (s *h2stream) WriteTrailerFields(visit func(emit func(name, value []byte))) error {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	if err := s.flushOut(false); err != nil {
		return err
	}
	s.ended = true
	return s.writeFieldBlock(visit, false, true)
}

// writeFieldBlock encodes fields from visit (after :status when status)
// and sends them as one header block.
func (s *h2stream) writeFieldBlock(visit func(emit func(name, value []byte)), status, end bool) error {
	c := s.c
	c.mu.Lock()
	maxFrame := c.peerMaxFrame
	c.mu.Unlock()
	c.wmu.Lock()
	c.hbuf.Reset()
	if status {
		st, ok := statusValues[s.status]
		if !ok {
			st = strconv.Itoa(s.status)
		}
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: st})
	}
	visit(func(k, v []byte) {
		name := c.wireNameBytes(k)
		if name == "" || connectionSpecific(name) || (name == "te" && string(v) != "trailers") || !validFieldValue(v) {
			return
		}
		if neverIndexed(name) {
			// Not kept by the encoder: the bytes can be read in place.
			_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: unsafeString(v), Sensitive: true})
			return
		}
		_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: c.internValue(v)})
	})
	err := s.sendBlockLocked(c.hbuf.Bytes(), maxFrame, end)
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
	return err
}

// sendBlockLocked writes a header block as HEADERS and CONTINUATION
// frames (under wmu).
func (s *h2stream) sendBlockLocked(block []byte, maxFrame int, end bool) error {
	c := s.c
	first := block[:min(len(block), maxFrame)]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: first,
		EndStream: end, EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; err == nil && len(rest) > 0; {
		chunk := rest[:min(len(rest), maxFrame)]
		rest = rest[len(chunk):]
		err = c.fr.WriteContinuation(s.id, len(rest) == 0, chunk)
	}
	return err
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func validFieldValue(v []byte) bool {
	for _, b := range v {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// wireNameBytes is wireName for a name given as bytes (any case).
// Called under wmu.
func (c *h2conn) wireNameBytes(k []byte) string {
	if n, ok := c.names[string(k)]; ok {
		return n
	}
	return c.wireName(string(k))
}

// internValue returns v as a string, the same one each time while the
// connection's table of them has room (values the HPACK encoder indexes
// are kept by it, so they must be real strings). Called under wmu.
func (c *h2conn) internValue(v []byte) string {
	if s, ok := c.values[string(v)]; ok {
		return s
	}
	s := string(v)
	if len(c.values) < maxInternedNames && len(v) <= 256 {
		c.values[s] = s
	}
	return s
}

// h2body is a stream's request body: what the reader goroutine buffered.
type h2body h2stream

func (b *h2body) Read(p []byte) (int, error) {
	s := (*h2stream)(b)
	c := s.c
	c.mu.Lock()
	for len(s.buf) == s.off && !s.remoteDone && !s.closed && !s.bodyClosed {
		s.readCond.Wait()
	}
	if s.bodyClosed {
		c.mu.Unlock()
		return 0, errors.New("http2: read on closed request body")
	}
	if len(s.buf) > s.off {
		n := copy(p, s.buf[s.off:])
		s.off += n
		if s.off == len(s.buf) {
			s.buf, s.off = s.buf[:0], 0
		}
		c.mu.Unlock()
		c.credit(s, int64(n))
		return n, nil
	}
	if s.remoteDone {
		t := s.trailer
		s.trailer = nil
		c.mu.Unlock()
		if t != nil && s.req.Trailer != nil {
			for _, hf := range t {
				k := http.CanonicalHeaderKey(hf.Name)
				if _, declared := s.req.Trailer[k]; declared {
					s.req.Trailer[k] = append(s.req.Trailer[k], hf.Value)
				}
			}
		}
		return 0, io.EOF
	}
	err := s.err
	c.mu.Unlock()
	if err == nil {
		err = errStreamClosed
	}
	return 0, err
}

// Close discards what is left of the body (its window goes back).
func (b *h2body) Close() error {
	s := (*h2stream)(b)
	c := s.c
	c.mu.Lock()
	if s.bodyClosed {
		c.mu.Unlock()
		return nil
	}
	s.bodyClosed = true
	unread := int64(len(s.buf) - s.off)
	s.buf, s.off = nil, 0
	s.readCond.Broadcast()
	c.mu.Unlock()
	if unread > 0 {
		c.credit(nil, unread)
	}
	return nil
}
