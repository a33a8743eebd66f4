package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Streamed request bodies (DoStreamBody) on HTTP/1.1 upstreams: what the
// upstream receives, byte for byte and chunk by chunk, read by a parser of
// the test's own.

// upRequest is one request as an upstream read it off the wire.
type upRequest struct {
	method, target string
	header         textproto.MIMEHeader
	body           []byte
	chunks         []int // a chunked body's chunk sizes, in order
	trailer        textproto.MIMEHeader
	err            error // why the request could not be read whole
}

// readUpRequest reads one request: its head, then its body by
// Content-Length or by chunks (each chunk's size recorded).
func readUpRequest(br *bufio.Reader) *upRequest {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return &upRequest{err: err}
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) != 3 {
		return &upRequest{err: fmt.Errorf("request line %q", line)}
	}
	r := &upRequest{method: parts[0], target: parts[1]}
	if r.header, r.err = tp.ReadMIMEHeader(); r.err != nil {
		return r
	}
	if strings.EqualFold(r.header.Get("Transfer-Encoding"), "chunked") {
		for {
			sl, err := tp.ReadLine()
			if err != nil {
				r.err = err
				return r
			}
			n, err := strconv.ParseInt(sl, 16, 64)
			if err != nil {
				r.err = fmt.Errorf("chunk size line %q", sl)
				return r
			}
			if n == 0 {
				r.trailer, r.err = tp.ReadMIMEHeader()
				return r
			}
			r.chunks = append(r.chunks, int(n))
			b := make([]byte, n+2)
			if _, err := io.ReadFull(br, b); err != nil {
				r.body = append(r.body, b[:n]...)
				r.err = err
				return r
			}
			if string(b[n:]) != "\r\n" {
				r.err = fmt.Errorf("chunk of %d not followed by CRLF: %q", n, b[n:])
				return r
			}
			r.body = append(r.body, b[:n]...)
		}
	}
	if cl := r.header.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil {
			r.err = err
			return r
		}
		r.body = make([]byte, n)
		k, err := io.ReadFull(br, r.body)
		r.body, r.err = r.body[:k], err
	}
	return r
}

// uploadServer is an upstream that reads every request whole (the test's
// parser), hands it to the test, and answers 200 "got N" with N the body
// bytes it read. A request it cannot read whole is handed over with its
// error and the connection closed.
func uploadServer(t *testing.T) (string, <-chan *upRequest) {
	got := make(chan *upRequest, 64)
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r := readUpRequest(br)
			if r.err == io.EOF && r.method == "" {
				return // the client closed the idle connection
			}
			got <- r
			if r.err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\ngot %d", len(fmt.Sprint("got ", len(r.body))), len(r.body)); err != nil {
				return
			}
		}
	})
	return addr, got
}

// received waits for the next request the upstream read.
func received(t *testing.T, got <-chan *upRequest) *upRequest {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the upstream received no request")
		return nil
	}
}

// piecesReader hands out its pieces one Read each (a client's body as it
// arrives); a nil piece is a Read of (0, nil). It refuses a Read of an
// empty buffer: nothing should ask for nothing.
type piecesReader struct {
	pieces [][]byte
	err    error             // returned once the pieces are out (io.EOF when nil)
	onRead func(i int) error // called before each Read, with its number
	i      int
}

func (r *piecesReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errors.New("a read of 0 bytes")
	}
	if r.onRead != nil {
		if err := r.onRead(r.i); err != nil {
			return 0, err
		}
	}
	if r.i >= len(r.pieces) {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	pc := r.pieces[r.i]
	if len(pc) > len(p) {
		panic("a piece larger than the read")
	}
	r.i++
	return copy(p, pc), nil
}

func pieces(sizes ...int) ([][]byte, []byte) {
	var ps [][]byte
	var all []byte
	for i, n := range sizes {
		if n < 0 {
			ps = append(ps, nil)
			continue
		}
		b := bytes.Repeat([]byte{byte('a' + i%26)}, n)
		ps = append(ps, b)
		all = append(all, b...)
	}
	return ps, all
}

// uploadAnswer checks DoStreamBody's answer: 200 "got n".
func uploadAnswer(t *testing.T, rb ResponseBody, err error, resp *fasthttp.Response, n int) {
	t.Helper()
	if err != nil {
		t.Fatalf("DoStreamBody: %v", err)
	}
	got := string(resp.Body())
	if rb != nil {
		b, err := io.ReadAll(rb)
		_ = rb.Close()
		if err != nil {
			t.Fatal(err)
		}
		got = string(b)
	}
	if resp.StatusCode() != 200 || got != fmt.Sprint("got ", n) {
		t.Fatalf("answer %d %q, want 200 %q", resp.StatusCode(), got, fmt.Sprint("got ", n))
	}
}

// A body of known length reaches the upstream whole, and a chunked one as
// one chunk per read of the client's body (each flushed as it comes, none
// merged, none empty); reads of (0, nil) before the first bytes are
// skipped. The connection is reused for the next upload.
func TestDoStreamBodyUploadsExactly(t *testing.T) {
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	sizes := []int{-1, -1, 10, 5000, 1, 60000, 3}
	for _, size := range []int{-1, 0} {
		ps, all := pieces(sizes...)
		if size == 0 {
			size = len(all)
		}
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, &piecesReader{pieces: ps}, size, resp, time.Now().Add(30*time.Second))
		r := received(t, got)
		if r.err != nil || !bytes.Equal(r.body, all) {
			t.Fatalf("size %d: the upstream read %d bytes (%v), want %d", size, len(r.body), r.err, len(all))
		}
		if size < 0 && fmt.Sprint(r.chunks) != "[10 5000 1 60000 3]" {
			t.Fatalf("chunks %v, want one per read: [10 5000 1 60000 3]", r.chunks)
		}
		if size >= 0 && r.header.Get("Content-Length") != strconv.Itoa(len(all)) {
			t.Fatalf("Content-Length %q", r.header.Get("Content-Length"))
		}
		uploadAnswer(t, rb, err, resp, len(all))
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
	if e.Active() != 0 {
		t.Fatalf("%d active", e.Active())
	}
}

// The request's headers go once the body's first bytes are in: a filter
// that changes them while it holds the body back (here, a header set at
// the body's first read) is heard upstream.
func TestDoStreamBodyHeadersWaitForFirstBytes(t *testing.T) {
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, first := range [][]int{{5, 5}, {-1, 5, 5}} {
		req, resp := streamReq()
		req.Header.SetMethod("PUT")
		ps, all := pieces(first...)
		body := &piecesReader{pieces: ps, onRead: func(i int) error {
			if i == 0 {
				req.Header.Set("X-Filter", "decided")
			}
			return nil
		}}
		rb, err := e.DoStreamBody(req, body, -1, resp, time.Now().Add(30*time.Second))
		r := received(t, got)
		if h := r.header.Get("X-Filter"); h != "decided" {
			t.Fatalf("pieces %v: X-Filter %q upstream, want the value set at the first read", first, h)
		}
		if !bytes.Equal(r.body, all) {
			t.Fatalf("body %q", r.body)
		}
		uploadAnswer(t, rb, err, resp, len(all))
	}
}

// Each read of the client's body waits only once everything read before
// it is with the upstream: the next piece is given only after the upstream
// has the previous one.
func TestDoStreamBodyFlushedBeforeEachRead(t *testing.T) {
	seen := make(chan int, 64) // body bytes the upstream has, as they come
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		tp := textproto.NewReader(br)
		if _, err := tp.ReadLine(); err != nil {
			return
		}
		if _, err := tp.ReadMIMEHeader(); err != nil {
			return
		}
		total := 0
		buf := make([]byte, 64)
		for total < 30 {
			n, err := br.Read(buf)
			total += n
			if n > 0 {
				seen <- total
			}
			if err != nil {
				return
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ngot 30")
	})
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	{
		ps, _ := pieces(10, 10, 10)
		had := 0
		body := &piecesReader{pieces: ps, onRead: func(i int) error {
			// Before reading piece i, the upstream must hold the i before.
			for had < 10*i {
				select {
				case had = <-seen:
				case <-time.After(20 * time.Second): // a safety net
					return fmt.Errorf("read %d: the upstream has only %d of the %d bytes read before", i, had, 10*i)
				}
			}
			return nil
		}}
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, body, 30, resp, time.Now().Add(60*time.Second))
		uploadAnswer(t, rb, err, resp, 30)
	}
}

// A body that fails to read (the client went away, a filter refused it)
// is a *BodyError, at the first read and later, and the upstream is not
// blamed: no early answer is waited for. Bytes past a declared length are
// never sent.
func TestDoStreamBodyReadErrors(t *testing.T) {
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	boom := errors.New("client gone")
	for _, tc := range []struct {
		name  string
		sizes []int
		size  int
	}{
		{"at once", nil, 100},
		{"at once, chunked", nil, -1},
		{"later", []int{10, 10}, 100},
		{"later, chunked", []int{10, 10}, -1},
	} {
		ps, _ := pieces(tc.sizes...)
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, &piecesReader{pieces: ps, err: boom}, tc.size, resp, time.Now().Add(30*time.Second))
		var be *BodyError
		if rb != nil || !errors.As(err, &be) || !errors.Is(err, boom) || err.Error() != "request body: client gone" {
			t.Fatalf("%s: %v (%T), body %v: want a *BodyError wrapping the read's", tc.name, err, err, rb != nil)
		}
		if tc.sizes != nil {
			// The upstream had the head and what was read; the connection
			// was closed under it.
			if r := received(t, got); r.err == nil || len(r.body) != 20 {
				t.Fatalf("%s: the upstream read %d bytes, %v", tc.name, len(r.body), r.err)
			}
		}
	}
	eventually(t, "no connection left", func() bool { return e.Conns() == 0 && e.Active() == 0 })
}

// A body that gives more than its declared length is the body's fault,
// and its extra bytes never reach the upstream (they would be read as the
// next request): not when they come with the first read, not after bytes
// that went straight to the socket.
func TestDoStreamBodyLongerThanDeclared(t *testing.T) {
	extra := make(chan int, 4)
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		r := readUpRequest(br)
		if r.err != nil {
			extra <- -1 - len(r.body)
			return
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\ngot %d", len(r.body))
		n, _ := io.Copy(io.Discard, br) // until the client closes
		extra <- int(n)
	})
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, tc := range []struct {
		sizes []int
		size  int
	}{
		{[]int{10, 10, 10}, 20},
		{[]int{10, 10, 1}, 20},
		{[]int{10, 5, 10}, 20},
		{[]int{21}, 20},
		{[]int{5}, 0},
	} {
		ps, _ := pieces(tc.sizes...)
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, &piecesReader{pieces: ps}, tc.size, resp, time.Now().Add(30*time.Second))
		var be *BodyError
		if rb != nil || !errors.As(err, &be) {
			t.Fatalf("pieces %v for %d: %v, body %v: want a *BodyError", tc.sizes, tc.size, err, rb != nil)
		}
		select {
		case n := <-extra:
			if tc.sizes[0] > tc.size {
				if n != -1 {
					t.Fatalf("pieces %v: the upstream got %d, want nothing (-1)", tc.sizes, n)
				}
				continue
			}
			// the pieces before the one that overran: a whole request, or less
			if sent := tc.sizes[0] + tc.sizes[1]; (sent == tc.size && n != 0) || (sent < tc.size && n != -1-sent) {
				t.Fatalf("pieces %v: the upstream got %d (past the request; -1-n: n of an incomplete one)", tc.sizes, n)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the connection was not closed")
		}
	}
	eventually(t, "no connection left", func() bool { return e.Conns() == 0 && e.Active() == 0 })
}

// testClientSocket is a loopback TCP pair: the test writes a body on w,
// and the cluster reads (or splices) it from r, as it would a client's
// socket.
func testClientSocket(t *testing.T) (w net.Conn, r *net.TCPConn) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		_ = w.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Close()
		_ = a.Close()
	})
	return w, a.(*net.TCPConn)
}

// socketBody is a request body arriving on a client socket that offers
// itself for splicing (a BodySplicer, as the proxy's HTTP/1.1 request
// body): size bytes, read at most maxRead at a time.
type socketBody struct {
	src     *net.TCPConn
	left    int64 // bytes of the body not yet taken from src
	maxRead int
	offer   bool  // BodySocket offers src
	over    int64 // BodySocket offers this many more than the body has
	held    int64 // BodyHeld's answer, at most left
	most    int64 // when > 0, BodySocket offers at most this many (one stretch of a chunked client body)

	mu      sync.Mutex
	spliced []int64 // BodySpliced's n, per call
	errs    []error // and its err
	ticks   int
}

func (b *socketBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errors.New("a read of 0 bytes")
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), b.maxRead, int(b.left))]
	n, err := io.ReadFull(b.src, p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.left == 0 {
		err = io.EOF // with the last bytes, as io.Reader allows
	}
	return n, err
}

func (b *socketBody) BodySocket() (*net.TCPConn, int64, bool) {
	if !b.offer || b.left == 0 {
		return nil, 0, false
	}
	if b.most > 0 {
		return b.src, min(b.left+b.over, b.most), true
	}
	return b.src, b.left + b.over, true
}

func (b *socketBody) BodySpliced(n int64, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spliced = append(b.spliced, n)
	b.errs = append(b.errs, err)
	b.left -= n
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

func (b *socketBody) BodyTick() {
	b.mu.Lock()
	b.ticks++
	b.mu.Unlock()
}

func (b *socketBody) BodyHeld() int64 { return min(b.held, b.left) }

func (b *socketBody) splices() ([]int64, []error, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int64(nil), b.spliced...), append([]error(nil), b.errs...), b.ticks
}

// sendBody writes n bytes of a pattern on w from a goroutine (then closes
// w's write side when closeAfter); the test waits for it at its end.
func sendBody(t *testing.T, w net.Conn, n int, closeAfter bool) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte('a' + i%23)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = w.Write(data)
		if closeAfter {
			_ = w.(*net.TCPConn).CloseWrite()
		}
	}()
	t.Cleanup(func() {
		_ = w.Close()
		<-done
	})
	return data
}

// A body on a client socket is spliced to the upstream from its second
// stretch on, as it is for a length (never past it, whatever the socket
// offers) and as one chunk for a chunked one, from exactly
// uploadSpliceMin bytes on; below that it is read and written.
func TestDoStreamBodySpliced(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, tc := range []struct {
		rest    int // bytes after the first read of 1000
		chunked bool
		over    int64
		splice  bool
	}{
		{uploadSpliceMin, false, 0, true},
		{uploadSpliceMin, true, 0, true},
		{uploadSpliceMin - 1, false, 0, false},
		{uploadSpliceMin - 1, true, 0, false},
		{200 << 10, false, 1 << 20, true},
		{200 << 10, true, 0, true},
	} {
		name := fmt.Sprintf("rest %d chunked %v over %d", tc.rest, tc.chunked, tc.over)
		w, r := testClientSocket(t)
		total := 1000 + tc.rest
		data := sendBody(t, w, total, true)
		body := &socketBody{src: r, left: int64(total), maxRead: 1000, offer: true, over: tc.over}
		size := total
		if tc.chunked {
			size = -1
		}
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, body, size, resp, time.Now().Add(30*time.Second))
		up := received(t, got)
		if up.err != nil || !bytes.Equal(up.body, data) {
			t.Fatalf("%s: the upstream read %d bytes (%v), want %d", name, len(up.body), up.err, total)
		}
		uploadAnswer(t, rb, err, resp, total)
		spliced, errs, ticks := body.splices()
		if tc.splice {
			if fmt.Sprint(spliced) != fmt.Sprint([]int64{int64(tc.rest)}) || errs[0] != nil || ticks == 0 {
				t.Fatalf("%s: spliced %v (%v), %d ticks: want [%d] in one splice", name, spliced, errs, ticks, tc.rest)
			}
			if tc.chunked && fmt.Sprint(up.chunks) != fmt.Sprint([]int{1000, tc.rest}) {
				t.Fatalf("%s: chunks %v, want [1000 %d]", name, up.chunks, tc.rest)
			}
		} else if len(spliced) != 0 {
			t.Fatalf("%s: spliced %v, want nothing below %d bytes", name, spliced, uploadSpliceMin)
		}
	}
	if e.Active() != 0 {
		t.Fatalf("%d active", e.Active())
	}
}

// A client that goes away mid-splice is the body's fault (BodySpliced is
// told the source's error, and DoStreamBody answers a *BodyError); an
// upstream that goes away is not (BodySpliced is told nothing).
func TestDoStreamBodySpliceFailures(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	t.Run("client", func(t *testing.T) {
		addr, got := uploadServer(t)
		c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		w, r := testClientSocket(t)
		sendBody(t, w, 100<<10, true) // of the 200 KiB announced
		body := &socketBody{src: r, left: 200 << 10, maxRead: 1000, offer: true}
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, body, 200<<10, resp, time.Now().Add(30*time.Second))
		var be *BodyError
		if rb != nil || !errors.As(err, &be) {
			t.Fatalf("%v (%T), body %v: want a *BodyError", err, err, rb != nil)
		}
		spliced, errs, _ := body.splices()
		if len(spliced) != 1 || spliced[0] != 99<<10+24 || !errors.Is(errs[0], io.ErrUnexpectedEOF) {
			t.Fatalf("spliced %v (%v), want %d and the client's unexpected EOF", spliced, errs, 99<<10+24)
		}
		if up := received(t, got); up.err == nil {
			t.Fatalf("the upstream read a whole request (%d bytes)", len(up.body))
		}
	})
	t.Run("upstream", func(t *testing.T) {
		addr := testserver.ServeTCP(t, func(c net.Conn) {
			readRequest(c)
			_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
		})
		c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		w, r := testClientSocket(t)
		const size = 16 << 20 // more than the sockets hold
		sendBody(t, w, size, true)
		body := &socketBody{src: r, left: size, maxRead: 1000, offer: true}
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, body, size, resp, time.Now().Add(30*time.Second))
		var be *BodyError
		if rb != nil || err == nil || errors.As(err, &be) {
			t.Fatalf("%v (%T), body %v: want the upstream's error", err, err, rb != nil)
		}
		spliced, errs, _ := body.splices()
		if len(spliced) != 1 || errs[0] != nil {
			t.Fatalf("spliced %v (%v): want one splice, told no client error", spliced, errs)
		}
	})
}

// A chunked body's pieces already in memory (BodyHeld) go up as one
// chunk, read without waiting and never asked for beyond what is held, up
// to the 64 KiB of one read; a read that fails among them is the body's
// error.
func TestDoStreamBodyGathersHeldPieces(t *testing.T) {
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, tc := range []struct {
		size, held int
		chunks     string
	}{
		// 1000 with the headers; then a read of 1000 and the 3000 held
		// after it (three reads of 1000) in one chunk, the last bytes
		// with io.EOF.
		{5000, 3000, "[1000 4000]"},
		// Everything held: one read's 64 KiB at a time.
		{140000, 1 << 30, "[1000 65536 65536 7928]"},
	} {
		w, r := testClientSocket(t)
		data := sendBody(t, w, tc.size, false)
		// Held (in memory, say) but not offered on the socket.
		body := &socketBody{src: r, left: int64(tc.size), maxRead: 1000, held: int64(tc.held)}
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, body, -1, resp, time.Now().Add(30*time.Second))
		up := received(t, got)
		if up.err != nil || !bytes.Equal(up.body, data) {
			t.Fatalf("%d: the upstream read %d bytes (%v)", tc.size, len(up.body), up.err)
		}
		uploadAnswer(t, rb, err, resp, tc.size)
		if fmt.Sprint(up.chunks) != tc.chunks {
			t.Fatalf("%d: chunks %v, want %s", tc.size, up.chunks, tc.chunks)
		}
	}

	// The client goes away with 2000 of the 5000 bytes held still to come.
	w, r := testClientSocket(t)
	sendBody(t, w, 3000, true)
	body := &socketBody{src: r, left: 5000, maxRead: 1000, held: 4000}
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	rb, err := e.DoStreamBody(req, body, -1, resp, time.Now().Add(30*time.Second))
	var be *BodyError
	if rb != nil || !errors.As(err, &be) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v (%T): want a *BodyError", err, err)
	}
}

// An upstream that stops reading an upload: the write gives up at the
// cluster's idle timeout, whether the body is written from memory or
// spliced from the client's socket, and the wait for an early answer that
// follows ends at the deadline (the upstream's fault, not the body's).
func TestDoStreamBodyUpstreamStopsReading(t *testing.T) {
	for _, spliced := range []bool{false, true} {
		t.Run(fmt.Sprint("spliced ", spliced), func(t *testing.T) {
			if spliced && !spliceOK {
				t.Skip("no splice on this OS")
			}
			stop := make(chan struct{})
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				<-stop // reads nothing more, answers nothing
			})
			t.Cleanup(func() { close(stop) })
			c := start(t, config.Cluster{Name: "u", Endpoints: static(addr), IdleTimeout: config.Duration(200 * time.Millisecond)}, Options{})
			e := c.Pick(0, false, nil)
			const size = 32 << 20 // far more than the sockets hold
			var body io.Reader
			if spliced {
				w, r := testClientSocket(t)
				sendBody(t, w, size, false)
				body = &socketBody{src: r, left: size, maxRead: 1000, offer: true}
			} else {
				body = io.LimitReader(zeros{}, size)
			}
			req, resp := streamReq()
			req.Header.SetMethod("POST")
			done := make(chan error, 1)
			go func() {
				rb, err := e.DoStreamBody(req, body, size, resp, time.Now().Add(time.Second))
				if rb != nil {
					_ = rb.Close()
					err = errors.New("an answer")
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != fasthttp.ErrTimeout {
					t.Fatalf("%v (%T): want fasthttp.ErrTimeout", err, err)
				}
			case <-time.After(30 * time.Second): // a safety net, not a measurement
				t.Fatal("the upload did not give up")
			}
		})
	}
}

// zeros is an endless body of zero bytes, 60000 at a time.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	n := min(len(p), 60000)
	clear(p[:n])
	return n, nil
}

// After an upload the wait for the answer is bounded: an upstream that
// takes the whole body and never answers is a timeout.
func TestDoStreamBodyAnswerDeadline(t *testing.T) {
	stop := make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		if r := readUpRequest(bufio.NewReader(c)); r.err != nil {
			return
		}
		<-stop
	})
	t.Cleanup(func() { close(stop) })
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	for _, size := range []int{5, -1} {
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, strings.NewReader("hello"), size, resp, time.Now().Add(300*time.Millisecond))
		if rb != nil || err != fasthttp.ErrTimeout {
			t.Fatalf("size %d: %v, want fasthttp.ErrTimeout", size, err)
		}
	}
	if e.Active() != 0 || e.Conns() != 0 {
		t.Fatalf("%d active, %d connections", e.Active(), e.Conns())
	}
}

// DoStream and DoStreamBody on an HTTP/1.1 cluster over TLS: the answer
// streams and the upload arrives whole (neither the answer wait nor the
// direct writes apply under TLS).
func TestDoStreamOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*pki.server}})
	big := strings.Repeat("t", 100<<10)
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if len(ctx.PostBody()) > 0 {
			fmt.Fprintf(ctx, "got %d", len(ctx.PostBody()))
			return
		}
		ctx.SetBodyString(big)
	}, CloseOnShutdown: true, MaxIdleWorkerDuration: 50 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		_ = s.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		// Bounded: a failed test may leave a connection busy.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.ShutdownWithContext(ctx)
		_ = ln.Close()
		<-done
	})
	c := start(t, config.Cluster{Name: "t", Endpoints: static(ln.Addr().String()), TLS: &config.ClusterTLS{Mode: "mtls"}}, Options{TLS: pki.client()})
	e := c.Pick(0, false, nil)
	body, _ := streamGet(t, e, "/", nil)
	if body == nil {
		t.Fatal("no body to stream")
	}
	if b, err := io.ReadAll(body); err != nil || string(b) != big {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	_ = body.Close()
	for _, size := range []int{70000, -1} {
		ps, all := pieces(10, 60000, 9990)
		req, resp := streamReq()
		req.Header.SetMethod("POST")
		rb, err := e.DoStreamBody(req, &piecesReader{pieces: ps}, size, resp, time.Now().Add(30*time.Second))
		uploadAnswer(t, rb, err, resp, len(all))
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}

// An answer that cannot be parsed is neither a reset nor a timeout.
func TestDoStreamMalformedAnswer(t *testing.T) {
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		_, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
	})
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if rb != nil || err == nil || Classify(err) != Other {
		t.Fatalf("%v, classified %v: want Other", err, Classify(err))
	}
}
