package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Streamed response bodies (DoStream) from HTTP/1.1 upstreams, read
// through h1Body: lengths, chunks, trailers, the idle bound, and when the
// connection goes back to the pool.

// scriptServer is an upstream that, per connection, reads each request's
// head and writes the answer's parts in turn, waiting before each part
// after the first for the test to say go (so that it is not read with the
// headers). It ends the connection after the last answer.
func scriptServer(t *testing.T, answers ...[]string) (string, chan<- struct{}) {
	gate := make(chan struct{}, 64)
	stop := make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for _, parts := range answers {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			for i, p := range parts {
				if i > 0 {
					select {
					case <-gate:
					case <-stop:
						return
					}
				}
				if _, err := io.WriteString(c, p); err != nil {
					return
				}
			}
		}
		// Wait for the client to close (or the test to end) so that the
		// last answer is not cut by this end's close.
		_, _ = io.Copy(io.Discard, br)
	})
	t.Cleanup(func() { close(stop) })
	return addr, gate
}

// streamGet sends GET path and returns the body to stream (nil when the
// answer came whole).
func streamGet(t *testing.T, e *Endpoint, path string, setup func(*fasthttp.Request)) (ResponseBody, *fasthttp.Response) {
	t.Helper()
	req, resp := streamReq()
	req.SetRequestURI(path)
	if setup != nil {
		setup(req)
	}
	body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	fasthttp.ReleaseRequest(req)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	return body, resp
}

// A streamed body of known length ends on the read that takes its last
// byte (io.EOF with it): read exactly that far, it frees the connection
// for the next request. ContentLength is the declared length, -1 for a
// chunked body and for one that ends at the close. A small answer that
// came whole with its headers has no body to stream.
func TestDoStreamLengthEndsOnLastByte(t *testing.T) {
	const hdr = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
	addr, gate := scriptServer(t,
		[]string{hdr, "0123456789"},
		[]string{hdr + "0123456789"},
		[]string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n"},
		[]string{"HTTP/1.1 200 OK\r\n\r\n", "until close"},
	)
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)

	body, _ := streamGet(t, e, "/1", nil)
	gate <- struct{}{}
	if body == nil || body.ContentLength() != 10 {
		t.Fatalf("a body to stream of 10, got %v", body)
	}
	if n, err := body.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	p := make([]byte, 4)
	var got []byte
	var err error
	for err == nil {
		var n int
		n, err = body.Read(p)
		got = append(got, p[:n]...)
		if err == nil && len(got) == 10 {
			t.Fatal("the read of the last byte did not report io.EOF")
		}
	}
	if err != io.EOF || string(got) != "0123456789" {
		t.Fatalf("read %q, %v", got, err)
	}
	if n, err := body.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("a read after the end: %d, %v", n, err)
	}
	_ = body.Close()
	_ = body.Close() // a second Close does nothing
	if e.Active() != 0 || e.Conns() != 1 {
		t.Fatalf("after the body: %d active, %d connections", e.Active(), e.Conns())
	}

	if body, resp := streamGet(t, e, "/2", nil); body != nil || string(resp.Body()) != "0123456789" {
		t.Fatalf("an answer whole with its headers: body %v, %q", body != nil, resp.Body())
	}

	body, resp := streamGet(t, e, "/3", nil)
	gate <- struct{}{}
	if body == nil || body.ContentLength() != -1 {
		t.Fatalf("chunked: body %v", body)
	}
	if b, err := io.ReadAll(body); err != nil || string(b) != "abc" {
		t.Fatalf("chunked: %q, %v", b, err)
	}
	_ = body.Close()
	_ = resp

	body, _ = streamGet(t, e, "/4", nil)
	gate <- struct{}{}
	if body == nil || body.ContentLength() != -1 {
		t.Fatalf("until close: body %v", body)
	}
	_ = body.Close()
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}

// "Connection: close" from either side, or a body read short of its end,
// keeps the connection out of the pool, whether the body streamed or came
// with the headers; a request's Connection: close reaches the upstream.
func TestDoStreamConnectionCloseNotReused(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		reqClose     bool
		streamed     bool
	}{
		{"request close, whole", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, false},
		{"request close, streamed", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true, true},
		{"answer close, whole", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false, false},
		{"answer close, streamed", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heads := make(chan string, 4)
			gate := make(chan struct{}, 1)
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(l)
					if l == "\r\n" {
						break
					}
				}
				heads <- head.String()
				_, _ = io.WriteString(c, tc.answer)
				if tc.streamed {
					select {
					case <-gate:
					case <-time.After(30 * time.Second):
						return
					}
					_, _ = io.WriteString(c, "ok")
				}
				_, _ = io.Copy(io.Discard, br)
			})
			c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
			e := c.Pick(0, false, nil)
			body, resp := streamGet(t, e, "/", func(r *fasthttp.Request) {
				if tc.reqClose {
					r.SetConnectionClose()
				}
			})
			if tc.streamed != (body != nil) {
				t.Fatalf("body to stream %v, want %v", body != nil, tc.streamed)
			}
			got := string(resp.Body())
			if body != nil {
				gate <- struct{}{}
				b, err := io.ReadAll(body)
				if err != nil {
					t.Fatal(err)
				}
				_ = body.Close()
				got = string(b)
			}
			if got != "ok" {
				t.Fatalf("got %q", got)
			}
			if h := <-heads; tc.reqClose != strings.Contains(strings.ToLower(h), "connection: close") {
				t.Fatalf("the upstream saw %q", h)
			}
			if e.Conns() != 0 || e.Active() != 0 {
				t.Fatalf("%d connections left in the pool, %d active", e.Conns(), e.Active())
			}
		})
	}
}

// An upstream that closes mid-body: io.ErrUnexpectedEOF (not a short body
// read as whole), for a length and for a chunk, and in a chunked body's
// trailers; the error stays, and the connection is closed.
func TestDoStreamBodyCutShort(t *testing.T) {
	for _, tc := range []struct{ name, head, rest string }{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "01234"},
		{"chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n01234"},
		{"chunk's CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\n01234\r"},
		{"chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\n01234\r\n1"},
		{"trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\n01234\r\n0\r\nX-T: 1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{}, 1)
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, tc.head)
				select {
				case <-gate:
				case <-time.After(30 * time.Second):
					return
				}
				_, _ = io.WriteString(c, tc.rest)
				_ = c.(*net.TCPConn).CloseWrite()
			})
			c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
			e := c.Pick(0, false, nil)
			body, _ := streamGet(t, e, "/", nil)
			gate <- struct{}{}
			if body == nil {
				t.Fatal("no body to stream")
			}
			b, err := io.ReadAll(body)
			if err != io.ErrUnexpectedEOF || !strings.HasPrefix("01234", string(b)) {
				t.Fatalf("read %q, %v: want io.ErrUnexpectedEOF", b, err)
			}
			if _, err2 := body.Read(make([]byte, 10)); err2 != err {
				t.Fatalf("a read after the error: %v", err2)
			}
			_ = body.Close()
			if e.Conns() != 0 || e.Active() != 0 {
				t.Fatalf("%d connections, %d active", e.Conns(), e.Active())
			}
		})
	}
}

// A chunked body's trailers are in the response header once the body
// ended; chunk sizes of every hex digit form, with extensions and
// padding, are read as RFC 9112 has them; the connection is reused.
func TestDoStreamChunkedTrailersAndSizes(t *testing.T) {
	chunks := []struct {
		line string
		n    int
	}{
		{"1", 1}, {"9", 9}, {"a", 10}, {"f", 15}, {"A", 10}, {"F", 15}, {"10", 16}, {"1f", 31},
		{"00000000000000b", 11}, {"3;name=value", 3}, {"2 \t", 2}, {"4 ;x", 4},
	}
	var wire strings.Builder
	var want strings.Builder
	for i, ch := range chunks {
		data := strings.Repeat(string(rune('a'+i)), ch.n)
		fmt.Fprintf(&wire, "%s\r\n%s\r\n", ch.line, data)
		want.WriteString(data)
	}
	wire.WriteString("0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n")
	addr, gate := scriptServer(t,
		[]string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer, X-Other\r\n\r\n", wire.String()},
		[]string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	)
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	body, resp := streamGet(t, e, "/", nil)
	gate <- struct{}{}
	if body == nil {
		t.Fatal("no body to stream")
	}
	if string(resp.Header.Peek("X-Trailer")) != "" {
		t.Fatal("a trailer before the body was read")
	}
	// Reads of 7 bytes: chunks larger and smaller than the buffer.
	var got []byte
	p := make([]byte, 7)
	for {
		n, err := body.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
	}
	if string(got) != want.String() {
		t.Fatalf("body %q, want %q", got, want.String())
	}
	if a, b := string(resp.Header.Peek("X-Trailer")), string(resp.Header.Peek("X-Other")); a != "yes" || b != "2" {
		t.Fatalf("trailers %q %q", a, b)
	}
	_ = body.Close()
	if body, resp := streamGet(t, e, "/", nil); body != nil || string(resp.Body()) != "ok" {
		t.Fatalf("the next request: body %v, %q", body != nil, resp.Body())
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}

// readChunkSize and readCRLF on their own: every digit's edges, the
// 15-digit bound, a line past the reader's buffer, and what is refused.
func TestReadChunkSizeLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  error
	}{
		{"0\r\n", 0, nil},
		{"9\r\n", 9, nil},
		{"a\r\n", 10, nil},
		{"f\r\n", 15, nil},
		{"A\r\n", 10, nil},
		{"F\r\n", 15, nil},
		{"10\r\n", 16, nil},
		{"09af\r\n", 0x9af, nil},
		{"AF09\r\n", 0xaf09, nil},
		{"fffffffffffffff\r\n", 0xfffffffffffffff, nil},
		{"5\n", 5, nil},
		{"5;a=b;c\r\n", 5, nil},
		{"5 \t \r\n", 5, nil},
		{"ffffffffffffffff\r\n", 0, errBadChunk},
		{"0000000000000000\r\n", 0, errBadChunk},
		{"\r\n", 0, errBadChunk},
		{";x\r\n", 0, errBadChunk},
		{"g\r\n", 0, errBadChunk},
		{"G\r\n", 0, errBadChunk},
		{"/\r\n", 0, errBadChunk},
		{":\r\n", 0, errBadChunk},
		{"`\r\n", 0, errBadChunk},
		{"@\r\n", 0, errBadChunk},
		{"-1\r\n", 0, errBadChunk},
		{"5", 0, io.ErrUnexpectedEOF},
		{"", 0, io.ErrUnexpectedEOF},
		{strings.Repeat("0", 40) + "5\r\n", 0, errBadChunk}, // past the 32-byte buffer
	} {
		n, err := readChunkSize(bufio.NewReaderSize(strings.NewReader(tc.in), 32))
		if n != tc.want || err != tc.err {
			t.Errorf("readChunkSize(%q) = %d, %v; want %d, %v", tc.in, n, err, tc.want, tc.err)
		}
	}
	for _, tc := range []struct {
		in  string
		err error
	}{
		{"\r\n", nil}, {"\r\nx", nil}, {"\n\r", errBadChunk}, {"x\n", errBadChunk}, {"\rx", errBadChunk}, {"\r", io.ErrUnexpectedEOF}, {"", io.ErrUnexpectedEOF},
	} {
		if err := readCRLF(bufio.NewReader(strings.NewReader(tc.in))); err != tc.err {
			t.Errorf("readCRLF(%q) = %v, want %v", tc.in, err, tc.err)
		}
	}
}

// A body whose first bytes never come is cut at the idle timeout too (the
// read deadline is set before the first read that has to wait), with
// ErrBodyIdle; so is one that stalls after its first bytes.
func TestDoStreamBodyIdleFromFirstRead(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"length, nothing after the headers", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"},
		{"chunked, nothing after the headers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"until close, nothing after the headers", "HTTP/1.1 200 OK\r\n\r\n"},
		{"length, stalled after 2 bytes", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, tc.head)
				<-release
			})
			t.Cleanup(func() { close(release) }) // before the server's cleanup waits for it
			c := start(t, config.Cluster{Name: "s", Endpoints: static(addr), IdleTimeout: config.Duration(200 * time.Millisecond)}, Options{})
			e := c.Pick(0, false, nil)
			body, _ := streamGet(t, e, "/", nil)
			if body == nil {
				t.Fatal("no body to stream")
			}
			t.Cleanup(func() { _ = body.Close() })
			read := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(body)
				read <- err
			}()
			select {
			case err := <-read:
				if err != ErrBodyIdle {
					t.Fatalf("read ended with %v, want ErrBodyIdle", err)
				}
			case <-time.After(30 * time.Second): // a safety net, not a measurement
				t.Fatal("a stalled body was not cut at the idle timeout")
			}
			if _, err := body.Read(make([]byte, 4)); err != ErrBodyIdle {
				t.Fatalf("a read after the cut: %v", err)
			}
		})
	}
}

// A body that keeps coming, each byte well within the idle timeout but
// all of it over longer than it, is not cut: the read deadline moves
// ahead as reads wait (each read here waits past a tenth of the timeout).
func TestDoStreamSlowBodyNotCut(t *testing.T) {
	const idle = time.Second
	const steps = 6
	next := make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		_, _ = io.WriteString(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", steps))
		for range steps {
			select {
			case <-next:
			case <-time.After(30 * time.Second):
				return
			}
			_, _ = io.WriteString(c, "x")
		}
		_, _ = io.Copy(io.Discard, c)
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr), IdleTimeout: config.Duration(idle)}, Options{})
	e := c.Pick(0, false, nil)
	body, _ := streamGet(t, e, "/", nil)
	if body == nil {
		t.Fatal("no body to stream")
	}
	defer body.Close()
	start := time.Now()
	p := make([]byte, 1)
	for i := range steps {
		if i > 0 {
			time.Sleep(idle / 3) // the pace of a slow upstream, not a wait for a condition
		}
		next <- struct{}{}
		n, err := body.Read(p)
		if n != 1 || (err != nil && (err != io.EOF || i != steps-1)) {
			t.Fatalf("byte %d after %v: %d, %v", i, time.Since(start), n, err)
		}
	}
}

// Response headers that do not come by the deadline: fasthttp.ErrTimeout,
// and the connection is closed. A deadline already past opens no
// connection; no deadline at all waits as long as it takes.
func TestDoStreamDeadlines(t *testing.T) {
	release := make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		for l := line; l != "\r\n" && l != ""; {
			l, _ = br.ReadString('\n')
		}
		if strings.Contains(line, "/silent") {
			<-release
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	t.Cleanup(func() { close(release) })
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)

	req, resp := streamReq()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if body, err := e.DoStream(req, resp, time.Now().Add(-time.Second)); err != fasthttp.ErrTimeout || body != nil {
		t.Fatalf("a past deadline: %v", err)
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 0 {
		t.Fatalf("a past deadline opened %d connections", n)
	}
	if body, err := e.DoStream(req, resp, time.Time{}); err != nil || body != nil || string(resp.Body()) != "ok" {
		t.Fatalf("no deadline: %v, %q", err, resp.Body())
	}
	req.SetRequestURI("/silent")
	if body, err := e.DoStream(req, resp, time.Now().Add(300*time.Millisecond)); err != fasthttp.ErrTimeout || body != nil {
		t.Fatalf("silent upstream: %v, want fasthttp.ErrTimeout", err)
	}
	if e.Conns() != 0 || e.Active() != 0 {
		t.Fatalf("%d connections, %d active", e.Conns(), e.Active())
	}
}

// Requests beyond max_conns_per_endpoint wait as pending; once every body
// is closed nothing is left pending or active.
func TestDoStreamPendingReleased(t *testing.T) {
	addr, gate := scriptServer(t,
		[]string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "ok"},
		[]string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	)
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr), MaxConnsPerEndpoint: 1}, Options{})
	e := c.Pick(0, false, nil)
	body, _ := streamGet(t, e, "/1", nil)
	if body == nil {
		t.Fatal("no body to stream")
	}
	second := make(chan error, 1)
	go func() {
		req, resp := streamReq()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		if err == nil && (rb != nil || string(resp.Body()) != "ok") {
			err = errors.New("the second answer is not the whole \"ok\"")
		}
		second <- err
	}()
	eventually(t, "the second request pending", func() bool { return c.breakers.pending.Load() == 1 })
	gate <- struct{}{}
	if b, err := io.ReadAll(body); err != nil || string(b) != "ok" {
		t.Fatalf("%q %v", b, err)
	}
	_ = body.Close()
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if p, a := c.breakers.pending.Load(), e.Active(); p != 0 || a != 0 {
		t.Fatalf("%d pending, %d active after both", p, a)
	}
}

// A pooled connection the upstream reset (RST, not FIN) while it was idle:
// the next request does not fail. The pool's check finds the reset and
// passes the connection over (or, should the reset come after the check,
// the write or the read fails on it and the GET goes again on a new one:
// pooledconn.go); the requests after it work, two at once too: nothing of
// the stale connection is left in the client's pools.
func TestDoStreamResetPooledConn(t *testing.T) {
	answered := make(chan struct{}, 1)
	reset := make(chan struct{}, 1)
	hold := make(chan struct{}, 1)
	stop := make(chan struct{})
	var first atomic.Bool
	first.Store(true)
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		l, err := br.ReadString('\n')
		for err == nil && l != "\r\n" {
			l, err = br.ReadString('\n')
		}
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if first.Swap(false) {
			select {
			case <-answered: // the client has the answer: reset the connection
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
				reset <- struct{}{}
			case <-stop:
			}
			return
		}
		for { // later connections serve on
			line, err := br.ReadString('\n')
			for l := line; err == nil && l != "\r\n"; {
				l, err = br.ReadString('\n')
			}
			if err != nil {
				return
			}
			if !strings.Contains(line, "/hold") {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
			select {
			case <-hold:
			case <-stop:
				return
			}
			_, _ = io.WriteString(c, "ok")
		}
	})
	t.Cleanup(func() { close(stop) }) // before the server's cleanup waits for it
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr), IdleTimeout: longIdle}, Options{})
	e := c.Pick(0, false, nil)
	for i := range 4 {
		req, resp := streamReq()
		body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		fasthttp.ReleaseRequest(req)
		ok := err == nil && body == nil && string(resp.Body()) == "ok"
		fasthttp.ReleaseResponse(resp)
		if !ok {
			t.Fatalf("request %d: %v, body %v (request 1 met the reset connection)", i, err, body != nil)
		}
		if i == 0 {
			answered <- struct{}{}
			<-reset
		}
	}
	// A body held open (its reader taken from the pool) while another
	// request needs a reader of its own.
	held, _ := streamGet(t, e, "/hold", nil)
	if held == nil {
		t.Fatal("/hold: no body to stream")
	}
	if body, resp := streamGet(t, e, "/", nil); body != nil || string(resp.Body()) != "ok" {
		t.Fatalf("beside a held body: %v, %q", body != nil, resp.Body())
	}
	hold <- struct{}{}
	if b, err := io.ReadAll(held); err != nil || string(b) != "ok" {
		t.Fatalf("/hold: %q, %v", b, err)
	}
	_ = held.Close()
	if n := c.stats.ConnectionsOpened.Load(); n != 3 {
		t.Fatalf("%d connections opened, want 3", n)
	}
	if s, r := c.stats.StaleConnsClosed.Load(), c.stats.PooledConnRetries.Load(); s+r != 1 {
		t.Fatalf("%d stale connections closed and %d requests sent again: want one of them, once", s, r)
	}
}
