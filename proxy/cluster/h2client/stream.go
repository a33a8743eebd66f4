package h2client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/httpheader"
)

// stream is one request and its response. Its fields below mu are guarded
// by the connection's mu.
type stream struct {
	c   *conn
	id  uint32
	req *http.Request

	headers  chan struct{} // closed when resp or err is set
	readCond sync.Cond     // on c.mu: body data, end or error arrived
	// bodyState: 0 not read yet, 1 the writer reads it, 2 left to a retry.
	bodyState     atomic.Int32
	reqBodyClosed atomic.Bool

	// Guarded by c.mu.
	resp        *http.Response
	headersDone bool
	gotHeaders  bool
	buf         []byte
	off         int
	sendWindow  int64
	recvWindow  int64
	recvUnacked int64
	remoteDone  bool // END_STREAM received
	localDone   bool // END_STREAM sent
	stopSending bool // the request body is no longer wanted
	bodyClosed  bool // the response body was closed
	trailer     http.Header
	err         error
	retry       bool // err says the server did not process the stream
	finished    bool
	stopCtx     func() bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// roundTrip sends req on a new stream of c, whose slot the caller
// reserved.
func (c *conn) roundTrip(req *http.Request) (*http.Response, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	s := &stream{c: c, req: req, headers: make(chan struct{})}
	s.readCond.L = &c.mu

	if err := validate(req); err != nil {
		c.release()
		return nil, err
	}
	c.wmu.Lock()
	c.mu.Lock()
	if c.closed || c.goingAway {
		err := c.err
		c.mu.Unlock()
		c.wmu.Unlock()
		c.release()
		if err == nil {
			err = errors.New("h2client: server sent GOAWAY")
		}
		return nil, &errRetry{err: err}
	}
	// The ID is taken and the stream registered before its HEADERS go:
	// a GOAWAY read meanwhile sees it (and fails it for a retry when
	// its ID is beyond the GOAWAY's last one).
	s.id = c.nextID
	c.nextID += 2
	s.sendWindow = c.peerInitWindow
	s.recvWindow = int64(c.t.cfg.StreamWindow)
	s.localDone = !hasBody
	c.streams[s.id] = s
	maxFrame := c.maxFrameSize
	c.mu.Unlock()
	c.hbuf.Reset()
	if err := c.encodeHeaders(req, hasBody); err != nil {
		// validate passed, so this is not the request's fault; the
		// encoder's table may hold fields the server never saw: the
		// connection cannot be used any more.
		c.wmu.Unlock()
		s.fail(err, false)
		c.goAwayAndClose(http2.ErrCodeInternal, err)
		return nil, err
	}
	block := c.hbuf.Bytes()
	first := block[:min(len(block), maxFrame)]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      s.id,
		BlockFragment: first,
		EndStream:     !hasBody,
		EndHeaders:    len(first) == len(block),
	})
	for rest := block[len(first):]; err == nil && len(rest) > 0; {
		chunk := rest[:min(len(rest), maxFrame)]
		rest = rest[len(chunk):]
		err = c.fr.WriteContinuation(s.id, len(rest) == 0, chunk)
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(fmt.Errorf("h2client: write: %w", err))
		<-s.headers
		return nil, s.errResult()
	}
	if !hasBody {
		wroteRequest(req)
	}
	// AfterFunc registers with the context without a goroutine (and
	// without making its Done channel, which Done would).
	if ctx := req.Context(); ctx != context.Background() {
		stop := context.AfterFunc(ctx, func() { s.cancel(ctx) })
		c.mu.Lock()
		if s.finished {
			c.mu.Unlock()
			stop()
		} else {
			s.stopCtx = stop
			c.mu.Unlock()
		}
	}
	if hasBody {
		go s.writeBody()
	}
	<-s.headers
	c.mu.Lock()
	resp := s.resp
	c.mu.Unlock()
	if resp != nil {
		return resp, nil
	}
	return nil, s.errResult()
}

// errResult is the error a failed stream gives RoundTrip: a retry marker
// when the server did not process it and its body can be sent again.
func (s *stream) errResult() error {
	s.c.mu.Lock()
	err, retry := s.err, s.retry
	s.c.mu.Unlock()
	if retry && s.bodyState.CompareAndSwap(0, 2) {
		return &errRetry{err: err}
	}
	if retry && s.req.GetBody != nil {
		if b, gerr := s.req.GetBody(); gerr == nil {
			return &errRetry{err: err, body: b}
		}
	}
	return err
}

// validate checks what encodeHeaders will encode, so that a malformed
// request fails alone, before it touches the connection's HPACK state.
func validate(req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("h2client: invalid authority %q", host)
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2client: invalid header name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2client: invalid value for header %q", k)
			}
		}
	}
	for k, vs := range req.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2client: invalid trailer name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2client: invalid value for trailer %q", k)
			}
		}
	}
	if f, ok := req.Context().Value(fieldsKey{}).(Fields); ok {
		var err error
		f.VisitFields(func(name, value []byte) {
			if err == nil {
				err = validField(name, value)
			}
		})
		return err
	}
	return nil
}

// validField checks a field given as bytes.
func validField(name, value []byte) error {
	if len(name) == 0 {
		return errors.New("h2client: empty header name")
	}
	for _, b := range name {
		if !validNameByte(b) {
			return fmt.Errorf("h2client: invalid header name %q", name)
		}
	}
	for _, b := range value {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return fmt.Errorf("h2client: invalid value for header %q", name)
		}
	}
	return nil
}

// perCall are request headers whose values differ on every call: they are
// sent as never-indexed literals, keeping the HPACK table for the values
// calls repeat.
var perCall = map[string]bool{
	"x-request-id": true, "traceparent": true, "tracestate": true, "grpc-timeout": true,
	"x-b3-traceid": true, "x-b3-spanid": true, "x-b3-parentspanid": true, "b3": true,
	"x-envoy-attempt-count": true, "x-client-trace-id": true, "date": true, "content-length": true,
}

func (c *conn) field(name, value string, sensitive bool) {
	_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: sensitive})
}

// encodeHeaders writes req's header block into c.hbuf.
func (c *conn) encodeHeaders(req *http.Request, hasBody bool) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	c.field(":method", method, false)
	if method != http.MethodConnect {
		scheme := req.URL.Scheme
		if scheme == "" {
			scheme = "http"
		}
		path := req.URL.RequestURI()
		c.field(":scheme", scheme, false)
		c.field(":authority", host, false)
		c.field(":path", path, false)
	} else {
		c.field(":authority", host, false)
	}
	if f, ok := req.Context().Value(fieldsKey{}).(Fields); ok {
		var err error
		f.VisitFields(func(name, value []byte) {
			if err == nil {
				err = c.byteField(name, value)
			}
		})
		if err != nil {
			return err
		}
	}
	for k, vs := range req.Header {
		lk := lower(k)
		switch lk {
		case "host", "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive", "content-length":
			continue
		}
		for _, v := range vs {
			if lk == "te" && v != "trailers" {
				continue
			}
			c.field(lk, v, perCall[lk])
		}
	}
	if cl := req.ContentLength; cl > 0 || (cl == 0 && hasBody) {
		c.field("content-length", strconv.FormatInt(cl, 10), true)
	}
	return nil
}

// Fields lists a request's header fields as bytes, for a caller whose
// headers are not an http.Header (weft's streams keep fasthttp's): a
// request whose context carries one (WithFields) sends its fields, then
// those of req.Header. The client drops the connection-specific ones
// (Connection, Host, Transfer-Encoding, ...) and Content-Length (it sends
// req.ContentLength); the caller drops the rest it does not want sent.
type Fields interface {
	VisitFields(emit func(name, value []byte))
}

type fieldsKey struct{}

// WithFields returns ctx carrying f for the request it is the context of.
func WithFields(ctx context.Context, f Fields) context.Context {
	return context.WithValue(ctx, fieldsKey{}, f)
}

// maxInterned bounds a connection's interned header strings.
const maxInterned = 512

// byteField encodes one field given as bytes: names lower-cased, both
// validated; names and values calls repeat are interned per connection so
// that encoding them allocates nothing, per-call values are never-indexed
// literals whose bytes are copied into the block and not kept.
func (c *conn) byteField(name, value []byte) error {
	var lb [64]byte
	lname, copied := name, false
	for i, b := range name {
		if 'A' <= b && b <= 'Z' {
			if !copied {
				lname, copied = append(lb[:0], name...), true
			}
			lname[i] = b + 'a' - 'A'
		}
	}
	switch string(lname) {
	case "host", "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive", "content-length":
		return nil
	case "te":
		if !bytes.EqualFold(value, []byte("trailers")) {
			return nil
		}
		c.field("te", "trailers", false)
		return nil
	}
	n := c.intern(lname)
	if perCall[n] {
		if len(value) == 0 {
			c.field(n, "", true)
			return nil
		}
		// Never indexed: the encoder copies the bytes and keeps nothing.
		c.field(n, unsafe.String(&value[0], len(value)), true)
		return nil
	}
	c.field(n, c.intern(value), false)
	return nil
}

// intern returns b as a string, the same one each time while the
// connection's table of them has room. Called under wmu.
func (c *conn) intern(b []byte) string {
	if s, ok := c.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.interned) < maxInterned && len(b) <= 256 {
		if c.interned == nil {
			c.interned = make(map[string]string)
		}
		c.interned[s] = s
	}
	return s
}

func validNameByte(b byte) bool {
	return b < 0x80 && httpguts.IsTokenRune(rune(b))
}

// lower returns s in lower case, allocating only when it has upper case.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// writeBody sends the request body as DATA frames as the flow-control
// windows allow, then END_STREAM (with trailers when the request has
// them).
func (s *stream) writeBody() {
	c, body := s.c, s.req.Body
	if !s.bodyState.CompareAndSwap(0, 1) {
		return
	}
	defer s.closeReqBody()
	// The stream may have ended before this goroutine ran (a full answer
	// then RST_STREAM NO_ERROR, a reset): finish left the body alone, as
	// nothing was reading it yet, so it is closed here, unread, rather
	// than read by a goroutine that no stream waits for.
	c.mu.Lock()
	finished := s.finished
	c.mu.Unlock()
	if finished {
		return
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		last := rerr == io.EOF && len(s.req.Trailer) == 0
		if n > 0 || last {
			if err := s.sendData(buf[:n], last); err != nil {
				return
			}
		}
		if rerr == nil {
			continue
		}
		if rerr != io.EOF {
			s.abort(fmt.Errorf("h2client: reading the request body: %w", rerr))
			return
		}
		if !last {
			if err := s.sendTrailers(); err != nil {
				s.abort(err)
				return
			}
		}
		c.mu.Lock()
		s.localDone = true
		c.mu.Unlock()
		wroteRequest(s.req)
		s.maybeDone()
		return
	}
}

// wroteRequest tells the request's httptrace, if it has one, that the
// request went whole (as net/http's transport does): its HEADERS, and
// its body to END_STREAM.
func wroteRequest(req *http.Request) {
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteRequest != nil {
		tr.WroteRequest(httptrace.WroteRequestInfo{})
	}
}

// sendData sends data (and END_STREAM with its last byte when end) as the
// windows open.
func (s *stream) sendData(data []byte, end bool) error {
	c := s.c
	for {
		c.mu.Lock()
		var avail int64
		for {
			if s.err != nil || s.stopSending {
				err := s.err
				c.mu.Unlock()
				if err == nil {
					err = errors.New("h2client: request body no longer wanted")
				}
				return err
			}
			if c.closed {
				c.mu.Unlock()
				return c.err
			}
			avail = min(s.sendWindow, c.sendWindow, int64(c.maxFrameSize))
			if avail > 0 || len(data) == 0 {
				break
			}
			c.sendCond.Wait()
		}
		take := min(avail, int64(len(data)))
		s.sendWindow -= take
		c.sendWindow -= take
		c.mu.Unlock()
		chunk := data[:take]
		data = data[take:]
		c.wmu.Lock()
		err := c.fr.WriteData(s.id, end && len(data) == 0, chunk)
		c.wmu.Unlock()
		if err != nil {
			c.close(fmt.Errorf("h2client: write: %w", err))
			return err
		}
		if len(data) == 0 {
			return nil
		}
	}
}

func (s *stream) sendTrailers() error {
	c := s.c
	// The trailers may have been filled as the body ended (after
	// validate ran): check them before they touch the encoder.
	for k, vs := range s.req.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2client: invalid trailer name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2client: invalid value for trailer %q", k)
			}
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	for k, vs := range s.req.Trailer {
		lk := lower(k)
		for _, v := range vs {
			c.field(lk, v, false)
		}
	}
	if c.hbuf.Len() > c.maxFrameSizeLocked() {
		return errors.New("h2client: request trailers larger than one frame")
	}
	return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true})
}

func (c *conn) maxFrameSizeLocked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxFrameSize
}

// closeReqBody closes the request body once.
func (s *stream) closeReqBody() {
	if s.reqBodyClosed.CompareAndSwap(false, true) {
		_ = s.req.Body.Close()
	}
}

// onHeaders takes the response headers, or the trailers.
func (s *stream) onHeaders(f *http2.MetaHeadersFrame) error {
	c := s.c
	c.mu.Lock()
	if s.err != nil {
		c.mu.Unlock()
		return nil
	}
	if s.remoteDone {
		c.mu.Unlock()
		return errors.New("h2client: HEADERS after END_STREAM")
	}
	if s.gotHeaders {
		if !f.StreamEnded() {
			c.mu.Unlock()
			return errors.New("h2client: trailers without END_STREAM")
		}
		if len(f.PseudoFields()) > 0 {
			c.mu.Unlock()
			return errors.New("h2client: pseudo-header in trailers")
		}
		t := make(http.Header, len(f.Fields))
		for _, hf := range f.Fields {
			k := httpheader.CanonicalKey(hf.Name)
			t[k] = append(t[k], hf.Value)
		}
		s.trailer = t
		s.remoteDone = true
		s.readCond.Broadcast()
		c.mu.Unlock()
		s.maybeDone()
		return nil
	}
	c.mu.Unlock()

	st := f.PseudoValue("status")
	code, err := strconv.Atoi(st)
	if err != nil || len(st) != 3 || code < 100 {
		return fmt.Errorf("h2client: bad :status %q", st)
	}
	if code < 200 {
		if code == 101 || f.StreamEnded() {
			return fmt.Errorf("h2client: unexpected :status %d", code)
		}
		return nil // an interim answer: the final one follows
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	for _, hf := range regular {
		k := httpheader.CanonicalKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	resp := &http.Response{
		Status:        statusText(code),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Request:       s.req,
		ContentLength: -1,
		Body:          (*body)(s),
	}
	if v := h["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	ended := f.StreamEnded()
	if ended && resp.ContentLength < 0 {
		resp.ContentLength = 0
	}
	c.mu.Lock()
	if s.err != nil {
		c.mu.Unlock()
		return nil
	}
	s.gotHeaders = true
	s.resp = resp
	s.remoteDone = ended
	if !s.headersDone {
		s.headersDone = true
		close(s.headers)
	}
	c.mu.Unlock()
	if ended {
		s.maybeDone()
	}
	return nil
}

func statusText(code int) string {
	if code == http.StatusOK {
		return "200 OK"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// fail ends the stream with err (retry: the server did not process it).
func (s *stream) fail(err error, retry bool) {
	c := s.c
	c.mu.Lock()
	if s.err != nil || s.finished && s.remoteDone {
		c.mu.Unlock()
		return
	}
	s.err, s.retry = err, retry
	if !s.headersDone {
		s.headersDone = true
		close(s.headers)
	}
	s.readCond.Broadcast()
	c.sendCond.Broadcast()
	c.mu.Unlock()
	s.finish()
}

// reset handles the server's RST_STREAM (err nil) or a local stream error.
func (s *stream) reset(code http2.ErrCode, err error) {
	c := s.c
	c.mu.Lock()
	if code == http2.ErrCodeNo && s.remoteDone && err == nil {
		// The answer is complete; the server wants no more of the body.
		s.stopSending = true
		c.sendCond.Broadcast()
		c.mu.Unlock()
		s.maybeDone()
		return
	}
	c.mu.Unlock()
	if err == nil {
		err = http2.StreamError{StreamID: s.id, Code: code}
	}
	s.fail(err, code == http2.ErrCodeRefusedStream)
}

// abort resets the stream from this side.
func (s *stream) abort(err error) {
	s.c.rst(s.id, http2.ErrCodeCancel)
	s.fail(err, false)
}

// cancel is the request context's end.
func (s *stream) cancel(ctx context.Context) {
	c := s.c
	c.mu.Lock()
	done := s.err != nil || (s.remoteDone && s.localDone)
	c.mu.Unlock()
	if done {
		return
	}
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	s.abort(err)
}

// maybeDone finishes the stream once both sides ended.
func (s *stream) maybeDone() {
	c := s.c
	c.mu.Lock()
	done := s.remoteDone && (s.localDone || s.stopSending)
	c.mu.Unlock()
	if done {
		s.finish()
	}
}

// finish frees the stream's slot once; a request body still being read
// is closed (its reader gives up).
func (s *stream) finish() {
	c := s.c
	c.mu.Lock()
	if s.finished {
		c.mu.Unlock()
		return
	}
	s.finished = true
	stop := s.stopCtx
	closeBody := !s.localDone && s.bodyState.Load() == 1
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if closeBody {
		s.closeReqBody()
	}
	c.forget(s)
}

// body is a response body: what the reader goroutine buffered (the
// stream itself, so that it costs no allocation of its own).
type body stream

var errBodyClosed = errors.New("h2client: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	s := (*stream)(b)
	c := s.c
	c.mu.Lock()
	for len(s.buf) == s.off && !s.remoteDone && s.err == nil && !s.bodyClosed {
		s.readCond.Wait()
	}
	if s.bodyClosed {
		c.mu.Unlock()
		return 0, errBodyClosed
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
	if s.err != nil {
		err := s.err
		c.mu.Unlock()
		return 0, err
	}
	t := s.trailer
	c.mu.Unlock()
	if t != nil {
		s.resp.Trailer = t
	}
	return 0, io.EOF
}

// Close ends the body; before the stream's end it resets the stream.
func (b *body) Close() error {
	s := (*stream)(b)
	c := s.c
	c.mu.Lock()
	if s.bodyClosed {
		c.mu.Unlock()
		return nil
	}
	s.bodyClosed = true
	unread := int64(len(s.buf) - s.off)
	s.buf, s.off = nil, 0
	open := s.err == nil && !(s.remoteDone && s.localDone)
	s.readCond.Broadcast()
	c.mu.Unlock()
	if unread > 0 {
		c.credit(nil, unread)
	}
	if open {
		s.abort(errors.New("h2client: response body closed"))
	}
	return nil
}
