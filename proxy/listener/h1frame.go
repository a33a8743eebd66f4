package listener

import (
	"bytes"
	"errors"
	"io"
	"net"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/sockio"
)

// A request head whose lines end with a bare LF: fasthttp parses such
// lines but ends a head only at a CRLF CRLF, so a request written entirely
// with bare LFs waited for the read timeout (30 s) and got a 408. RFC 9112
// §2.2 lets a server accept a bare LF or refuse the message; weft refuses
// it, at once, as Envoy does. fasthttp gives no hook before it parses, so
// each HTTP/1.1 connection's bytes pass through h1Framer on their way in:
// it follows the request framing fasthttp uses (heads, Content-Length and
// chunked bodies) only far enough to know where heads are, and on a bare
// LF in a head or trailer it stops the stream just before that LF. fasthttp
// then holds an unfinished head and its next read fails with errBareLF,
// which the error handler answers with 400 and closes the connection.
//
// The framer never changes a byte: it only ends the stream early. Where it
// is unsure (an Upgrade or CONNECT, a chunk size or header it cannot read,
// a head over max_header_bytes, which fasthttp refuses anyway) it stops
// looking and passes everything through, so a disagreement with fasthttp
// can cost a connection its bare-LF check, never its bytes.

// errBareLF is the read error a connection returns once a head carried a
// bare LF.
var errBareLF = errors.New("a request line ended by LF without CR")

// ErrBareLF is the read error of a connection whose request carried a bare
// LF: a streamed body whose trailers do ends with it.
var ErrBareLF = errBareLF

const (
	stHead        = iota // a request head (or the blank lines before one)
	stBody               // left bytes of a Content-Length body
	stChunkSize          // a chunk-size line
	stChunkData          // left bytes of chunk data
	stChunkCR            // the CR after chunk data
	stChunkLF            // the LF after chunk data
	stTrailer            // trailer lines, up to the blank line
	stPass               // not framing any more: everything passes
	lineKeep      = 64   // bytes of a line kept for the fields framing needs
	maxChunkDigit = 15   // fasthttp's chunk sizes fit an int
)

// h1Framer follows one connection's request framing. The zero value is at
// the start of a connection; maxHead bounds a head (0: no bound).
type h1Framer struct {
	st      int
	left    int64
	maxHead int
	headLen int

	line   [lineKeep]byte // the current line's first bytes (without CR)
	n      int            // bytes of the current line, kept or not
	cr     bool           // the last byte was a CR
	lineNo int            // lines of this head so far (0: the request line next)

	cl      int64 // Content-Length (-1: none)
	chunked bool
	upgrade bool // Upgrade header or CONNECT: the bytes after the head are not HTTP/1.1

	// data counts the body bytes (chunk data for a chunked body) of the
	// current request that have passed, so a caller that splices the
	// body around the reader can tell what the reader still holds.
	data int64
	// heads counts the request heads that ended on the connection (it
	// survives startHead): inside a body, the number of its request.
	heads uint64
}

// scan follows p, the next bytes of the connection. It returns how many of
// them may go on: len(p), or fewer when a bare LF ends the stream (the
// bytes before it go, then the connection reads errBareLF).
func (f *h1Framer) scan(p []byte) (int, bool) {
	for i := 0; i < len(p); {
		switch f.st {
		case stPass:
			return len(p), true
		case stBody, stChunkData:
			k := int64(len(p) - i)
			if k > f.left {
				k = f.left
			}
			i += int(k)
			f.data += k
			if f.left -= k; f.left == 0 {
				if f.st == stBody {
					f.startHead()
				} else {
					f.st = stChunkCR
				}
			}
		case stChunkCR, stChunkLF:
			want := byte('\r')
			if f.st == stChunkLF {
				want = '\n'
			}
			if p[i] != want {
				f.st = stPass // fasthttp refuses it
				continue
			}
			i++
			if f.st++; f.st > stChunkLF {
				f.st = stChunkSize
			}
		default: // line-oriented: stHead, stChunkSize, stTrailer
			// A line at a time (IndexByte is vectorised): heads are on every
			// request's path.
			j := bytes.IndexByte(p[i:], '\n')
			seg := p[i:]
			if j >= 0 {
				seg = p[i : i+j]
			}
			if f.cr && len(seg) > 0 {
				f.st = stPass // a CR inside a line: fasthttp refuses it
				continue
			}
			crEnd := f.cr && j == 0
			if k := bytes.IndexByte(seg, '\r'); k >= 0 {
				if k != len(seg)-1 {
					f.st = stPass // a CR inside a line: fasthttp refuses it
					continue
				}
				seg, crEnd = seg[:k], true
			}
			if f.st == stHead {
				if f.headLen += len(seg) + 1; f.maxHead > 0 && f.headLen > f.maxHead {
					f.st = stPass // fasthttp answers 431 and closes
					continue
				}
			}
			if f.n < lineKeep {
				copy(f.line[f.n:], seg)
			}
			f.n += len(seg)
			if j < 0 {
				f.cr = crEnd
				return len(p), true
			}
			if !crEnd {
				if f.st == stChunkSize {
					f.st = stPass // fasthttp refuses a bare LF there itself
					continue
				}
				return i + j, false
			}
			i += j + 1
			f.endLine()
		}
	}
	return len(p), true
}

func (f *h1Framer) startHead() {
	*f = h1Framer{maxHead: f.maxHead, cl: -1, heads: f.heads}
}

// inBody reports, inside the body of the connection's request number
// req (1 for the first), the body bytes that have passed (data) and how
// many more of the same stretch are still to come on the connection
// (left: the rest of a Content-Length body, or of the current chunk's
// data); ok is false anywhere else.
func (f *h1Framer) inBody(req uint64) (data, left int64, ok bool) {
	if (f.st != stBody && f.st != stChunkData) || f.left <= 0 || f.heads != req {
		return 0, 0, false
	}
	return f.data, f.left, true
}

// bodyData reports the body bytes (chunk data) of request number req that
// have passed, anywhere inside that body's framing; ok is false outside it.
func (f *h1Framer) bodyData(req uint64) (data int64, ok bool) {
	switch f.st {
	case stBody, stChunkSize, stChunkData, stChunkCR, stChunkLF, stTrailer:
		return f.data, f.heads == req
	}
	return 0, false
}

// skip passes n body bytes that went around the framer (spliced): they
// are the next n of the current stretch (inBody's left).
func (f *h1Framer) skip(n int64) {
	if (f.st != stBody && f.st != stChunkData) || n > f.left {
		f.st = stPass // cannot happen through SkipBody; never guess
		return
	}
	f.data += n
	if f.left -= n; f.left == 0 {
		if f.st == stBody {
			f.startHead()
		} else {
			f.st = stChunkCR
		}
	}
}

// endLine acts on the line just ended by CRLF.
func (f *h1Framer) endLine() {
	line, whole := f.line[:min(f.n, lineKeep)], f.n <= lineKeep
	f.n, f.cr = 0, false
	switch f.st {
	case stHead:
		f.headLine(line, whole)
	case stChunkSize:
		size, ok := chunkSize(line, whole)
		switch {
		case !ok:
			f.st = stPass
		case size == 0:
			f.st = stTrailer
		default:
			f.st, f.left = stChunkData, size
		}
	case stTrailer:
		if len(line) == 0 {
			f.startHead()
		}
	}
}

func (f *h1Framer) headLine(line []byte, whole bool) {
	if f.lineNo == 0 {
		if len(line) == 0 {
			return // blank lines before a request line are skipped (RFC 9112 §2.2)
		}
		f.lineNo++
		f.cl = -1
		if bytes.HasPrefix(line, []byte("CONNECT ")) {
			f.upgrade = true
		}
		return
	}
	f.lineNo++
	if len(line) == 0 { // the end of the head
		f.heads++
		switch {
		case f.upgrade || (f.chunked && f.cl >= 0):
			f.st = stPass
		case f.chunked:
			f.st = stChunkSize
		case f.cl > 0:
			f.st, f.left = stBody, f.cl
		default:
			f.startHead()
		}
		return
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		if !whole {
			return // a name over lineKeep bytes: not one framing needs
		}
		f.st = stPass // fasthttp refuses it
		return
	}
	// Only three names matter; their lengths differ, so most lines are
	// passed over on a length compare.
	name := line[:colon]
	switch len(name) {
	case len("content-length"):
		if !bytes.EqualFold(name, []byte("content-length")) {
			return
		}
		n, ok := decimal(trimOWS(line[colon+1:]))
		if !whole || !ok || f.cl >= 0 {
			f.st = stPass
			return
		}
		f.cl = n
	case len("transfer-encoding"):
		if !bytes.EqualFold(name, []byte("transfer-encoding")) {
			return
		}
		value := trimOWS(line[colon+1:])
		switch {
		case whole && bytes.EqualFold(value, []byte("chunked")):
			f.chunked = true
		case whole && bytes.EqualFold(value, []byte("identity")):
		default:
			f.st = stPass
		}
	case len("upgrade"):
		if bytes.EqualFold(name, []byte("upgrade")) {
			f.upgrade = true
		}
	}
}

// trimOWS trims spaces and tabs from both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// decimal parses a Content-Length value as fasthttp does: digits only.
func decimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// chunkSize parses a chunk-size line (hex digits, then optional whitespace
// and extensions); ok is false for anything fasthttp might read otherwise.
func chunkSize(line []byte, whole bool) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := hexDigit(line[i])
		if !ok {
			break
		}
		if i == maxChunkDigit {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if i == 0 || (!whole && i == len(line)) {
		return 0, false
	}
	for _, c := range line[i:] {
		if c == ';' {
			return n, true // an extension runs to the line's end
		}
		if c != ' ' && c != '\t' {
			return 0, false
		}
	}
	return n, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// strictConn is an HTTP/1.1 connection whose reads pass through an
// h1Framer.
type strictConn struct {
	net.Conn
	f   h1Framer
	err error
	// skipped is how many body bytes were taken off the socket around
	// the reader (SkipBody): the next reads return that many bytes
	// without reading the socket, so fasthttp's count of the body stays
	// right. Their contents are whatever p held: the caller that spliced
	// them discards them.
	skipped int64
	// sock reads and writes the plain TCP socket under Conn once nothing
	// is held before it (sockio: no thread hand-off per call); nil until
	// then, or when there is none (noSock).
	sock   *sockio.Socket
	noSock bool
}

func (c *strictConn) Read(p []byte) (int, error) {
	if c.skipped > 0 && c.err == nil {
		n := int(min(int64(len(p)), c.skipped))
		c.skipped -= int64(n)
		return n, nil
	}
	if s := c.socket(); s != nil {
		return framedRead(s, &c.f, &c.err, p)
	}
	return framedRead(c.Conn, &c.f, &c.err, p)
}

// Write writes to the client.
func (c *strictConn) Write(p []byte) (int, error) {
	if s := c.socket(); s != nil {
		return s.Write(p)
	}
	return c.Conn.Write(p)
}

// SetDeadline sets the connection's deadlines (lazily on the plain
// socket: sockio).
func (c *strictConn) SetDeadline(t time.Time) error {
	if s := c.socket(); s != nil {
		return s.SetDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline (as SetDeadline).
func (c *strictConn) SetReadDeadline(t time.Time) error {
	if s := c.socket(); s != nil {
		return s.SetReadDeadline(t)
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline (as SetDeadline).
func (c *strictConn) SetWriteDeadline(t time.Time) error {
	if s := c.socket(); s != nil {
		return s.SetWriteDeadline(t)
	}
	return c.Conn.SetWriteDeadline(t)
}

// rawSocket is the plain TCP connection under c for a caller that reads
// or writes it itself: c's deadlines are on it from now on.
func (c *strictConn) rawSocket() *net.TCPConn {
	if s := c.socket(); s != nil {
		s.Settle()
	}
	return TCPConn(c.Conn)
}

// socket is the plain socket under c once the bytes read ahead for
// protocol detection are gone (nil before, or over anything but TCP).
func (c *strictConn) socket() *sockio.Socket {
	if c.sock != nil || c.noSock {
		return c.sock
	}
	tc, held := tcpBelow(c.Conn)
	switch {
	case held:
		return nil // not yet
	case tc == nil || !sockio.Available:
		c.noSock = true
	default:
		c.sock = sockio.New(tc)
		c.noSock = c.sock == nil
	}
	return c.sock
}

// BodyOnSocket reports where the request body being read on c, a
// connection the listener accepted, stands on its socket: passed is how
// many of its bytes (chunk data for a chunked body) went from the socket
// to fasthttp's reader so far, left how many more of the same stretch
// (the rest of a Content-Length body, or of the current chunk) are still
// on the socket, in order and unread. A caller that has read passed bytes
// of the body knows the reader holds none of it, and may move up to left
// bytes from tc itself, then calls SkipBody. ok is false when c is not a
// plain TCP HTTP/1.1 connection, or its framer is not inside a body.
//
// req is the request's number on the connection as fasthttp counts it
// (RequestCtx.ConnRequestNum): the framer may be ahead, in a pipelined
// request's body.
func BodyOnSocket(c net.Conn, req uint64) (tc *net.TCPConn, passed, left int64, ok bool) {
	sc, _ := c.(*strictConn)
	if sc == nil || sc.err != nil || sc.skipped > 0 {
		return nil, 0, 0, false
	}
	if tc = sc.rawSocket(); tc == nil {
		return nil, 0, 0, false
	}
	passed, left, ok = sc.f.inBody(req)
	return tc, passed, left, ok
}

// BodyRead reports how many bytes of the request body being read on c
// (request number req on the connection, as for BodyOnSocket) have gone
// from the socket to fasthttp's reader so far; ok is false when that is
// not known (not a plain HTTP/1.1 connection, or past that body). A caller
// that has read fewer knows the rest waits in the reader: reading it does
// not wait for the client.
func BodyRead(c net.Conn, req uint64) (passed int64, ok bool) {
	sc, _ := c.(*strictConn)
	if sc == nil || sc.err != nil || sc.skipped > 0 {
		return 0, false
	}
	return sc.f.bodyData(req)
}

// SkipBody records that the caller took the next n bytes of the request
// body off c's socket itself (at most BodyOnSocket's left): the framer
// moves past them, and c's next reads return n bytes without reading the
// socket (their contents undefined), which the caller then reads through
// fasthttp's body stream and discards, so that its count of the body
// stays right and the connection can serve its next request.
func SkipBody(c net.Conn, n int64) {
	if sc, _ := c.(*strictConn); sc != nil && n > 0 {
		sc.f.skip(n)
		sc.skipped += n
	}
}

func framedRead(r io.Reader, f *h1Framer, stuck *error, p []byte) (int, error) {
	if *stuck != nil {
		return 0, *stuck
	}
	n, err := r.Read(p)
	k, ok := f.scan(p[:n])
	if !ok {
		*stuck = errBareLF
		if k == 0 {
			return 0, errBareLF
		}
		return k, nil
	}
	return n, err
}

// TLSInfo passes through the wrapped connection's TLS facts.
func (c *strictConn) TLSInfo() *filter.TLSInfo {
	if ti, ok := c.Conn.(TLSInfoer); ok {
		return ti.TLSInfo()
	}
	return nil
}

// CloseWrite half-closes the wrapped connection (an upgraded stream ends).
func (c *strictConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// strictTLSConn is a strictConn over TLS: fasthttp and the proxy still see
// a TLS connection (Handshake, ConnectionState, TLSInfo are TLSConn's).
type strictTLSConn struct {
	*TLSConn
	f   h1Framer
	err error
}

func (c *strictTLSConn) Read(p []byte) (int, error) {
	return framedRead(c.TLSConn, &c.f, &c.err, p)
}

// strictListener frames every connection it accepts.
type strictListener struct {
	net.Listener
	maxHead int
}

func (l strictListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	f := h1Framer{maxHead: l.maxHead, cl: -1}
	if tc, ok := c.(*TLSConn); ok {
		return &strictTLSConn{TLSConn: tc, f: f}, nil
	}
	return &strictConn{Conn: c, f: f}, nil
}
