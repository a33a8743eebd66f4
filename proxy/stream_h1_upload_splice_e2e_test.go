package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Spliced request bodies: a streamed body no filter, mirror or retry
// needs goes from the client's socket to the upstream's through a kernel
// pipe (cluster.BodySplicer, listener.BodyOnSocket). The upstream must get
// exactly the client's bytes, the client's connection must go on to its
// next request, and every way a body ends early must end as it does when
// the body is copied.

// hashBodyTrailer is hashBody with the X-Sum trailer the upstream saw.
func hashBodyTrailer(r *http.Request) (int, string) {
	code, sum := hashBody(r)
	return code, sum + " " + r.Trailer.Get("X-Sum")
}

// TestH1SplicedUpload: Content-Length (POST, and PUT, which the retry
// buffer keeps the start of) and chunked uploads arrive byte for byte,
// trailers too, twice on one connection and then a small request on it;
// most of each body was spliced.
func TestH1SplicedUpload(t *testing.T) {
	addr := uploadUpstream(t, hashBodyTrailer)
	_, url := startProxy(t, uploadConfig, uploadVars(addr, "retry", ", retry: {attempts: 2, on: [5xx], backoff_base: 1ms}"))
	const size = 3<<20 + 4321
	for _, tc := range []struct{ name, method, head string }{
		{"content-length", "POST", fmt.Sprintf("Content-Length: %d\r\n", size)},
		{"content-length-put", "PUT", fmt.Sprintf("Content-Length: %d\r\n", size)},
		{"chunked", "POST", "Transfer-Encoding: chunked\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunked := strings.HasPrefix(tc.head, "Transfer")
			c, br := upload(t, url, tc.method, tc.head)
			for i := 0; i < 2; i++ {
				if i > 0 {
					if _, err := fmt.Fprintf(c, "%s /up HTTP/1.1\r\nHost: svc\r\n%s\r\n", tc.method, tc.head); err != nil {
						t.Fatal(err)
					}
				}
				before := splicedRequestBytes.Load()
				sent := make(chan [32]byte, 1)
				go func(seed uint64) {
					var w io.Writer = c
					bw := bufio.NewWriterSize(chunkWriter{c}, 256<<10) // 256 KiB chunks
					if chunked {
						w = bw
					}
					sum, _ := patterned(w, size, seed)
					if chunked {
						_ = bw.Flush()
						_, _ = io.WriteString(c, "0\r\nX-Sum: end\r\n\r\n")
					}
					sent <- sum
				}(uint64(i + 1))
				status, body := readAnswer(t, br)
				sum := <-sent
				want := fmt.Sprintf("%x %d ", sum, size)
				if chunked {
					want += "end"
				}
				if status != 200 || body != want {
					t.Fatalf("upload %d: %d %q, want %q", i, status, body, want)
				}
				if n := splicedRequestBytes.Load() - before; n < size/2 {
					t.Fatalf("upload %d: %d of %d bytes spliced, want most", i, n, size)
				}
			}
			// The connection's framing is where it should be.
			if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
				t.Fatal(err)
			}
			if status, body := readAnswer(t, br); status != 200 || !strings.HasSuffix(body, " 5 ") {
				t.Fatalf("the next request: %d %q", status, body)
			}
		})
	}
}

// Two uploads written at once on one connection, the second pipelined
// behind the first: the splice of the first never reaches into the
// second (the framer counts the request heads), and both arrive whole.
func TestH1SplicedUploadPipelined(t *testing.T) {
	seen := make(chan string, 4) // each body's hash and length, as the upstream read it
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		code, body := hashBodyTrailer(r)
		seen <- body
		return code, body
	})
	_, url := startProxy(t, uploadConfig, uploadVars(addr))
	const size = 700 << 10
	c, br := upload(t, url, "POST", fmt.Sprintf("Content-Length: %d\r\n", size))
	sums := make(chan [32]byte, 2)
	go func() {
		bw := bufio.NewWriterSize(c, 4<<20)
		s1, _ := patterned(bw, size, 11)
		_, _ = fmt.Fprintf(bw, "POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n", size)
		s2, _ := patterned(bw, size, 12)
		_ = bw.Flush() // both requests in as few writes as the sockets take
		sums <- s1
		sums <- s2
	}()
	for i := 0; i < 2; i++ {
		status, body := readAnswer(t, br)
		sum := <-sums
		if want := fmt.Sprintf("%x %d ", sum, size); status != 200 || body != want {
			t.Fatalf("upload %d: %d %q, want %q", i, status, body, want)
		}
		<-seen
	}

	// The first body read so far (one 10,000-byte chunk) equals what has
	// come of the second's (10,000 bytes of a 200 KiB chunk): only the
	// request count tells the second body's stretch on the socket from
	// the first's. The rest of the second body is sent once the upstream
	// has the first (fasthttp holds a pipelined answer until the next
	// request's body has been read, so the client cannot wait for it).
	c, br = upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	first := bytes.Repeat([]byte{'a'}, 10000)
	second := bytes.Repeat([]byte{'b'}, 200<<10)
	head := fmt.Sprintf("2710\r\n%s\r\n0\r\n\r\nPOST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s",
		first, len(second), second[:10000])
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-seen:
		if !strings.HasSuffix(body, " 10000 ") {
			t.Fatalf("first: the upstream got %q", body)
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the first body did not reach the upstream")
	}
	if _, err := fmt.Fprintf(c, "%s\r\n0\r\n\r\n", second[10000:]); err != nil {
		t.Fatal(err)
	}
	if status, body := readAnswer(t, br); status != 200 || !strings.HasSuffix(body, " 10000 ") {
		t.Fatalf("first: %d %q", status, body)
	}
	sum := sha256.Sum256(second)
	if status, body := readAnswer(t, br); status != 200 || body != fmt.Sprintf("%x %d ", sum, len(second)) {
		t.Fatalf("second: %d %q", status, body)
	}
}

// A client that stops mid-body, by closing its side or by going silent past
// the listener's read_timeout, while the body is spliced: it gets 400 or
// 408, the upstream's request is cut (never a complete body), and the
// upstream connection is not reused.
func TestH1SplicedUploadClientStops(t *testing.T) {
	cut := make(chan error, 4)
	var got atomic.Int64 // body bytes the current request brought the upstream
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		got.Store(0)
		buf := make([]byte, 32<<10)
		var err error
		for err == nil {
			var n int
			n, err = r.Body.Read(buf)
			got.Add(int64(n))
		}
		if err == io.EOF {
			err = nil
		}
		cut <- err // nil: the body was complete
		return 200, "cut"
	})
	cfg := strings.Replace(uploadConfig, "limits: {max_body_bytes: {{max}}}", "limits: {max_body_bytes: {{max}}, read_timeout: 500ms}", 1)
	_, url := startProxy(t, cfg, uploadVars(addr))
	for _, tc := range []struct {
		name string
		want int
	}{{"closes", 400}, {"silent", 408}} {
		t.Run(tc.name, func(t *testing.T) {
			before := splicedRequestBytes.Load()
			c, br := upload(t, url, "POST", "Content-Length: 8388608\r\n")
			if _, err := patterned(c, 2<<20, 5); err != nil {
				t.Fatal(err)
			}
			// Wait until the upstream has most of what was sent: past
			// the first 64 KiB (copied for the retry buffer and what the
			// reader held), the rest was spliced, and the stop hits a
			// splice waiting for the client.
			eventually(t, 30*time.Second, "the upstream to get 1 MiB", func() bool { return got.Load() >= 1<<20 })
			if tc.name == "closes" {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			status, _ := readAnswer(t, br)
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
			select {
			case err := <-cut:
				if err == nil {
					t.Fatal("the upstream got a complete body from a client that stopped")
				}
			case <-time.After(30 * time.Second): // a safety net, not a measurement
				t.Fatal("the upstream's request was not cut")
			}
			if splicedRequestBytes.Load()-before < 1<<20 {
				t.Fatal("less than 1 MiB spliced: the stop did not hit the splice")
			}
		})
	}
}

// An upstream that dies while a body is spliced to it: the client gets
// 502 (a POST is not retried once its body started), the endpoint's
// request ends, and the next upload goes through whole.
func TestH1SplicedUploadUpstreamDies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(first bool) {
				defer c.Close()
				r, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				if first {
					_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
					_ = c.(*net.TCPConn).SetLinger(0) // a reset, at once
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}(n == 0)
		}
	}()
	addr := ln.Addr().String()
	p, url := startProxy(t, uploadConfig, uploadVars(addr))
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	for i, want := range []int{502, 200} {
		before := splicedRequestBytes.Load()
		c, br := upload(t, url, "POST", "Content-Length: 4194304\r\n")
		go func() { _, _ = patterned(c, 4<<20, 9) }()
		status, _ := readAnswer(t, br)
		if status != want {
			t.Fatalf("upload %d: status %d, want %d", i, status, want)
		}
		if spliced := splicedRequestBytes.Load() - before; spliced == 0 {
			t.Fatalf("upload %d: nothing spliced", i)
		}
		_ = c.Close()
		eventually(t, 10*time.Second, "the endpoint to be idle", func() bool { return ep.Active() == 0 })
	}
}

// The listener's max_body_bytes still bounds a spliced chunked body: a
// splice stops at the limit, the byte past it is read and refused (413,
// counted), and the upstream never gets more than the limit.
func TestH1SplicedUploadLimit(t *testing.T) {
	const limit = 1 << 20
	got := make(chan int64, 1)
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- n
		return 200, "ok"
	})
	p, url := startProxy(t, uploadConfig, uploadVars(addr, "max", fmt.Sprint(limit)))
	before := splicedRequestBytes.Load()
	c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	go func() {
		bw := bufio.NewWriterSize(chunkWriter{c}, 256<<10) // 256 KiB chunks
		_, _ = patterned(bw, 3<<20, 2)
		_ = bw.Flush()
		_, _ = io.WriteString(c, "0\r\n\r\n")
	}()
	if status, _ := readAnswer(t, br); status != 413 {
		t.Fatalf("status %d, want 413", status)
	}
	select {
	case n := <-got:
		if n > limit {
			t.Fatalf("the upstream got %d bytes, over the %d limit", n, limit)
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the upstream's request did not end")
	}
	if n := splicedRequestBytes.Load() - before; n == 0 {
		t.Fatal("nothing spliced: the limit was not tested on the splice path")
	}
	if n, ok := metricValue(t, p, "weft_downstream_refused_total", "listener", "main", "reason", "body_too_large"); !ok || n != 1 {
		t.Fatalf("refusals counted %v (%t), want 1", n, ok)
	}
}

// Small chunks of an unfiltered chunked upload that reach weft together go
// upstream as fewer, larger chunks (what one read of the client's socket
// brought), the bytes unchanged.
func TestH1ChunkedUploadGathersChunks(t *testing.T) {
	type seen struct {
		chunks int
		body   []byte
		err    error
	}
	got := make(chan seen, 1)
	addr := bodyUpstreamRaw(t, func(c net.Conn, br *bufio.Reader) {
		var s seen
		for s.err == nil {
			var line string
			if line, s.err = br.ReadString('\n'); s.err != nil {
				break
			}
			var size int
			if _, s.err = fmt.Sscanf(line, "%x", &size); s.err != nil || size == 0 {
				_, _ = br.ReadString('\n') // the blank line after the last chunk
				break
			}
			s.chunks++
			chunk := make([]byte, size+2)
			if _, s.err = io.ReadFull(br, chunk); s.err == nil {
				s.body = append(s.body, chunk[:size]...)
			}
		}
		got <- s
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	_, url := startProxy(t, uploadConfig, uploadVars(addr))
	c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	var all, framed bytes.Buffer
	for i := 0; i < 200; i++ {
		piece := bytes.Repeat([]byte{byte('a' + i%26)}, 1000)
		all.Write(piece)
		_, _ = chunkWriter{&framed}.Write(piece)
	}
	framed.WriteString("0\r\n\r\n")
	if _, err := c.Write(framed.Bytes()); err != nil { // at once
		t.Fatal(err)
	}
	if status, body := readAnswer(t, br); status != 200 || body != "ok" {
		t.Fatalf("%d %q", status, body)
	}
	s := <-got
	if s.err != nil || !bytes.Equal(s.body, all.Bytes()) {
		t.Fatalf("the upstream got %d bytes (equal %t), %v", len(s.body), bytes.Equal(s.body, all.Bytes()), s.err)
	}
	if s.chunks > 100 {
		t.Fatalf("%d chunks upstream for 200 sent at once, want them gathered", s.chunks)
	}
}

// bodyUpstreamRaw serves each connection's first request head, then
// serve with the connection and its reader (the body still to read).
func bodyUpstreamRaw(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				serve(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}
