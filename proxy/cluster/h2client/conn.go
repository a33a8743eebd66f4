package h2client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// initialMaxStreams is assumed until the server's SETTINGS say.
	initialMaxStreams = 100
	// defaultWindow is HTTP/2's initial window before SETTINGS.
	defaultWindow = 65535
	maxWindow     = 1<<31 - 1
)

// conn is one HTTP/2 connection: a reader goroutine, and writes made by
// whichever goroutine has a frame to send, one at a time (wmu).
type conn struct {
	t  *Transport
	nc net.Conn
	fr *http2.Framer

	// wmu orders writes: the framer's, and the HPACK encoder's state with
	// the stream IDs (a stream's HEADERS go out in ID order).
	wmu      sync.Mutex
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	interned map[string]string

	mu       sync.Mutex
	streams  map[uint32]*stream
	nextID   uint32
	slots    int // streams open or reserved
	maxSlots int // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	// Send flow control: the connection's window, and the initial
	// window of the server's streams; sendCond wakes body writers.
	sendWindow     int64
	peerInitWindow int64
	maxFrameSize   int
	sendCond       *sync.Cond
	// Receive flow control: bytes read by bodies not yet credited back.
	recvWindow  int64
	recvUnacked int64
	goingAway   bool
	goAwayID    uint32
	closed      bool
	err         error
	idleSince   time.Time

	framesRead  atomic.Uint64
	pingPending atomic.Bool
	timer       *time.Timer
	lastFrames  uint64
	pingSentAt  time.Time
	lastActive  time.Time
	readerDone  chan struct{}
	settings    chan struct{} // closed at the server's first SETTINGS
}

func (c *conn) errOr(def error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return def
}

func newConn(t *Transport, nc net.Conn) (*conn, error) {
	c := &conn{
		t:              t,
		nc:             nc,
		streams:        make(map[uint32]*stream),
		nextID:         1,
		maxSlots:       initialMaxStreams,
		sendWindow:     defaultWindow,
		peerInitWindow: defaultWindow,
		maxFrameSize:   16384,
		recvWindow:     int64(t.cfg.ConnWindow),
		idleSince:      time.Now(),
		readerDone:     make(chan struct{}),
		settings:       make(chan struct{}),
		lastActive:     time.Now(),
	}
	c.sendCond = sync.NewCond(&c.mu)
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = t.cfg.MaxResponseHeaderBytes
	c.fr.SetMaxReadFrameSize(1 << 20)
	c.henc = hpack.NewEncoder(&c.hbuf)

	// Preface, our SETTINGS, and the connection window beyond 64 KiB.
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		return nil, err
	}
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(t.cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: t.cfg.MaxResponseHeaderBytes},
	)
	if err == nil && t.cfg.ConnWindow > defaultWindow {
		err = c.fr.WriteWindowUpdate(0, uint32(t.cfg.ConnWindow-defaultWindow))
	}
	if err != nil {
		return nil, err
	}
	c.timer = time.AfterFunc(c.tick(), c.onTimer) // before the reader, whose close stops it
	go c.readLoop()
	return c, nil
}

// tick is how often the connection checks for idleness and silence.
func (c *conn) tick() time.Duration {
	d := min(c.t.cfg.IdleTimeout, c.t.cfg.PingAfter, c.t.cfg.PingTimeout) / 2
	return max(d, 100*time.Millisecond)
}

// onTimer closes an idle connection, pings a silent one with streams, and
// closes one whose PING went unanswered.
func (c *conn) onTimer() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	now := time.Now()
	idle := len(c.streams) == 0 && c.slots == 0
	if idle && now.Sub(c.idleSince) >= c.t.cfg.IdleTimeout {
		streams, _ := c.markClosedLocked(errIdleClosed)
		c.mu.Unlock()
		c.finishIdleClose(streams)
		return
	}
	if idle && c.goingAway {
		c.mu.Unlock()
		c.close(errors.New("h2client: server sent GOAWAY"))
		return
	}
	if frames := c.framesRead.Load(); frames != c.lastFrames {
		c.lastFrames, c.lastActive = frames, now
	}
	var ping, dead bool
	switch {
	case c.pingPending.Load():
		dead = now.Sub(c.pingSentAt) >= c.t.cfg.PingTimeout
	case !idle && now.Sub(c.lastActive) >= c.t.cfg.PingAfter:
		ping = true
		c.pingSentAt = now
		c.pingPending.Store(true)
	}
	c.mu.Unlock()
	if dead {
		c.close(errors.New("h2client: PING not answered in time"))
		return
	}
	if ping {
		c.wmu.Lock()
		_ = c.fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'})
		c.wmu.Unlock()
	}
	c.timer.Reset(c.tick())
}

// reserve takes a stream slot when the connection may open one more.
func (c *conn) reserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.goingAway || c.slots >= c.maxSlots || c.nextID >= 1<<31-2 {
		return false
	}
	c.slots++
	return true
}

// reserveOrRefusing is reserve, also reporting whether the connection is
// open but its server allows no stream at all now.
func (c *conn) reserveOrRefusing() (ok, refusing bool) {
	c.mu.Lock()
	refusing = !c.closed && !c.goingAway && c.maxSlots == 0
	c.mu.Unlock()
	return c.reserve(), refusing
}

// release gives a slot back.
func (c *conn) release() {
	c.mu.Lock()
	c.slots--
	if c.slots == 0 {
		c.idleSince = time.Now()
	}
	lastAway := c.goingAway && c.slots == 0
	c.mu.Unlock()
	c.t.slotFreed()
	if lastAway {
		c.close(errors.New("h2client: server sent GOAWAY"))
	}
}

// errIdleClosed ends a connection the pool closed for carrying no stream.
var errIdleClosed = errors.New("h2client: idle connection closed")

// closeIfIdle closes c when it carries no stream.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	var streams []*stream
	idle := c.slots == 0
	if idle {
		streams, idle = c.markClosedLocked(errIdleClosed)
	}
	c.mu.Unlock()
	if idle {
		c.finishIdleClose(streams)
	}
}

// finishIdleClose tells the server and tears down a connection that was
// found idle and marked closed under one hold of c.mu. Deciding and
// marking at once is what keeps requests safe: reserve takes c.mu too, so
// a request either took a slot before (and c was not idle) or finds c
// closed and goes to another connection; none can take c in between and
// then fail because the pool closed it.
func (c *conn) finishIdleClose(streams []*stream) {
	if h := c.t.testHookIdleClose; h != nil {
		h(c)
	}
	c.wmu.Lock()
	_ = c.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	c.wmu.Unlock()
	c.teardown(errIdleClosed, streams)
}

func (c *conn) goAwayAndClose(code http2.ErrCode, err error) {
	c.wmu.Lock()
	_ = c.fr.WriteGoAway(0, code, nil)
	c.wmu.Unlock()
	c.close(err)
}

// close ends the connection: every stream on it fails with err.
func (c *conn) close(err error) {
	c.mu.Lock()
	streams, ok := c.markClosedLocked(err)
	c.mu.Unlock()
	if ok {
		c.teardown(err, streams)
	}
}

// markClosedLocked, called with c.mu held, marks c closed with err so that
// from then on no new stream takes it; it returns the streams teardown
// fails, and false when c was closed already.
func (c *conn) markClosedLocked(err error) ([]*stream, bool) {
	if c.closed {
		return nil, false
	}
	c.closed = true
	c.err = err
	streams := make([]*stream, 0, len(c.streams))
	for _, s := range c.streams {
		streams = append(streams, s)
	}
	return streams, true
}

// teardown, called without c.mu once markClosedLocked marked c closed,
// leaves the pool, closes the socket and fails streams with err.
func (c *conn) teardown(err error, streams []*stream) {
	c.timer.Stop()
	c.t.removeConn(c)
	_ = c.nc.Close()
	for _, s := range streams {
		// A stream the server never answered on a connection that
		// failed may not have been processed, but it may have been:
		// only GOAWAY and REFUSED_STREAM say so, so it is not retried.
		s.fail(fmt.Errorf("h2client: connection closed: %w", err), false)
	}
	c.mu.Lock()
	c.sendCond.Broadcast()
	c.mu.Unlock()
}

// readLoop reads frames until the connection fails.
func (c *conn) readLoop() {
	defer close(c.readerDone)
	gotSettings := false
	for {
		first := false
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if s := c.stream(se.StreamID); s != nil {
					s.reset(se.Code, fmt.Errorf("h2client: %w", se))
				}
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAwayAndClose(http2.ErrCode(ce), fmt.Errorf("h2client: %w", err))
				return
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.close(fmt.Errorf("h2client: read: %w", err))
			return
		}
		c.framesRead.Add(1)
		if !gotSettings {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.goAwayAndClose(http2.ErrCodeProtocol, fmt.Errorf("h2client: server's first frame is %v, not SETTINGS", f.Header().Type))
				return
			}
			gotSettings = true
			defer func() {
				select {
				case <-c.settings:
				default:
					close(c.settings)
				}
			}()
			first = true
		}
		var ferr error
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			ferr = c.onHeaders(f)
		case *http2.DataFrame:
			ferr = c.onData(f)
		case *http2.SettingsFrame:
			ferr = c.onSettings(f)
		case *http2.WindowUpdateFrame:
			ferr = c.onWindowUpdate(f)
		case *http2.RSTStreamFrame:
			if s := c.stream(f.StreamID); s != nil {
				s.reset(f.ErrCode, nil)
			}
		case *http2.PingFrame:
			if f.IsAck() {
				c.pingPending.Store(false)
			} else {
				c.wmu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				c.wmu.Unlock()
			}
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			ferr = http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if first && ferr == nil {
			close(c.settings) // now that its values are applied
		}
		if ferr != nil {
			var ce http2.ConnectionError
			if errors.As(ferr, &ce) {
				c.goAwayAndClose(http2.ErrCode(ce), fmt.Errorf("h2client: %w", ferr))
			} else {
				c.close(ferr)
			}
			return
		}
	}
}

func (c *conn) stream(id uint32) *stream {
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	return s
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var tableSize uint32
	hasTable := false
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxSlots = int(min(s.Val, 1<<20))
		case http2.SettingInitialWindowSize:
			if s.Val > maxWindow {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			delta := int64(s.Val) - c.peerInitWindow
			c.peerInitWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
			}
		case http2.SettingMaxFrameSize:
			c.maxFrameSize = int(s.Val)
		case http2.SettingHeaderTableSize:
			tableSize, hasTable = s.Val, true
		}
		return nil
	})
	c.sendCond.Broadcast()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	if hasTable {
		c.henc.SetMaxDynamicTableSizeLimit(tableSize)
	}
	err = c.fr.WriteSettingsAck()
	c.wmu.Unlock()
	c.t.slotFreed()
	return err
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.sendWindow+inc > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendWindow += inc
		c.sendCond.Broadcast()
		return nil
	}
	if s := c.streams[f.StreamID]; s != nil {
		if s.sendWindow+inc > maxWindow {
			// The stream ends with RST_STREAM FLOW_CONTROL_ERROR (RFC 9113
			// section 6.9.1), the server told as well; not under c.mu,
			// which both take.
			go func() {
				s.reset(http2.ErrCodeFlowControl, errors.New("h2client: stream window overflow"))
				c.rst(s.id, http2.ErrCodeFlowControl)
			}()
			return nil
		}
		s.sendWindow += inc
		c.sendCond.Broadcast()
	}
	return nil
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.goingAway = true
	c.goAwayID = f.LastStreamID
	var unprocessed []*stream
	for id, s := range c.streams {
		if id > f.LastStreamID {
			unprocessed = append(unprocessed, s)
		}
	}
	idle := c.slots == 0
	c.mu.Unlock()
	c.t.removeConn(c)
	err := fmt.Errorf("h2client: server sent GOAWAY (%v)", f.ErrCode)
	for _, s := range unprocessed {
		s.fail(err, true)
	}
	if idle {
		c.close(err)
	}
}

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	s := c.stream(f.StreamID)
	if s == nil {
		c.mu.Lock()
		unknown := f.StreamID >= c.nextID
		c.mu.Unlock()
		if unknown {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil // a stream we already reset
	}
	if f.Truncated {
		s.reset(http2.ErrCodeProtocol, errors.New("h2client: response headers exceed the limit"))
		c.rst(s.id, http2.ErrCodeCancel)
		return nil
	}
	if err := s.onHeaders(f); err != nil {
		s.reset(http2.ErrCodeProtocol, err)
		c.rst(s.id, http2.ErrCodeProtocol)
	}
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // flow control counts padding too
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	s := c.streams[f.StreamID]
	if s == nil || s.bodyClosed {
		c.mu.Unlock()
		c.credit(nil, n) // nobody will read it
		return nil
	}
	if n > s.recvWindow {
		c.mu.Unlock()
		s.reset(http2.ErrCodeFlowControl, errors.New("h2client: server overran the stream window"))
		c.rst(s.id, http2.ErrCodeFlowControl)
		c.credit(nil, n)
		return nil
	}
	if !s.gotHeaders {
		c.mu.Unlock()
		s.reset(http2.ErrCodeProtocol, errors.New("h2client: DATA before response headers"))
		c.rst(s.id, http2.ErrCodeProtocol)
		c.credit(nil, n)
		return nil
	}
	s.recvWindow -= n
	data := f.Data()
	s.buf = append(s.buf, data...)
	pad := n - int64(len(data))
	end := f.StreamEnded()
	if end {
		s.remoteDone = true
	}
	s.readCond.Signal()
	c.mu.Unlock()
	if pad > 0 {
		c.credit(s, pad)
	}
	if end {
		s.maybeDone()
	}
	return nil
}

// credit returns n bytes of receive window to the connection and, unless
// s is nil or done receiving, to s; it sends WINDOW_UPDATEs once half a
// window was used.
func (c *conn) credit(s *stream, n int64) {
	var connInc, streamInc uint32
	c.mu.Lock()
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.t.cfg.ConnWindow)/2 {
		connInc = uint32(c.recvUnacked)
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	if s != nil && !s.remoteDone && !s.bodyClosed {
		s.recvUnacked += n
		if s.recvUnacked >= int64(c.t.cfg.StreamWindow)/2 {
			streamInc = uint32(s.recvUnacked)
			s.recvWindow += s.recvUnacked
			s.recvUnacked = 0
		}
	}
	c.mu.Unlock()
	if connInc == 0 && streamInc == 0 {
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

// rst sends RST_STREAM.
func (c *conn) rst(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(id, code)
	c.wmu.Unlock()
}

// forget removes a finished stream and frees its slot.
func (c *conn) forget(s *stream) {
	c.mu.Lock()
	_, ok := c.streams[s.id]
	delete(c.streams, s.id)
	c.mu.Unlock()
	if ok {
		c.release()
	}
}
