package proxy

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Streamed HTTP/1.1 response bodies, against raw loopback upstreams that
// write exactly the bytes a case needs, when it needs them.

// rawUpstream accepts connections and runs serve on each, after reading
// the request head.
func bodyUpstream(t *testing.T, serve func(c net.Conn)) string {
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
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// rawGet sends a GET for path to the proxy on a new connection and returns
// the response with its body still to read. The connection's deadline is
// a safety net: a test that would hang fails instead.
func streamGet(t *testing.T, proxyURL, path string) (*http.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: svc\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, c
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// An event an upstream writes reaches the client while the upstream still
// holds the response open; so does the next one. Both framings an event
// stream uses: chunked, and a body that ends when the upstream closes.
func TestH1StreamsServerSentEvents(t *testing.T) {
	for _, framing := range []string{"chunked", "close"} {
		t.Run(framing, func(t *testing.T) {
			next := make(chan struct{})
			addr := bodyUpstream(t, func(c net.Conn) {
				write := func(ev string) {
					if framing == "chunked" {
						ev = fmt.Sprintf("%x\r\n%s\r\n", len(ev), ev)
					}
					_, _ = io.WriteString(c, ev)
				}
				head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
				if framing == "chunked" {
					head += "Transfer-Encoding: chunked\r\n\r\n"
				} else {
					head += "Connection: close\r\n\r\n"
				}
				_, _ = io.WriteString(c, head)
				write("data: one\n\n")
				<-next
				write("data: two\n\n")
				if framing == "chunked" {
					_, _ = io.WriteString(c, "0\r\n\r\n")
				}
			})
			_, url := startProxy(t, plainConfig, map[string]string{"up": addr})
			resp, _ := streamGet(t, url, "/events")
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
			}
			br := bufio.NewReader(resp.Body)
			readEvent := func(want string) {
				t.Helper()
				var got string
				for !strings.HasSuffix(got, "\n\n") {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading %q: got %q, %v (timeout: %t)", want, got+line, err, isNetTimeout(err))
					}
					got += line
				}
				if got != want {
					t.Fatalf("event %q, want %q", got, want)
				}
			}
			readEvent("data: one\n\n") // the upstream has not finished: it waits for next
			close(next)
			readEvent("data: two\n\n")
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the events: %q, %v", rest, err)
			}
		})
	}
}

// patterned writes n pseudo-random bytes (seeded) to w and returns their
// SHA-256.
func patterned(w io.Writer, n int64, seed uint64) ([32]byte, error) {
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 64<<10)
	for n > 0 {
		b := buf
		if int64(len(b)) > n {
			b = b[:n]
		}
		_, _ = rng.Read(b)
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return [32]byte{}, err
		}
		n -= int64(len(b))
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// chunkWriter frames what is written as HTTP/1.1 chunks.
type chunkWriter struct{ w io.Writer }

func (c chunkWriter) Write(p []byte) (int, error) {
	if _, err := fmt.Fprintf(c.w, "%x\r\n", len(p)); err != nil {
		return 0, err
	}
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	_, err := io.WriteString(c.w, "\r\n")
	return len(p), err
}

// A download one byte larger than the old 64 MiB buffer limit arrives
// whole, byte for byte, with its framing: Content-Length stays
// Content-Length, chunked stays chunked.
func TestH1StreamsLargeDownload(t *testing.T) {
	const size = 64<<20 + 1
	for _, framing := range []string{"content-length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			sums := make(chan [32]byte, 1)
			addr := bodyUpstream(t, func(c net.Conn) {
				bw := bufio.NewWriterSize(c, 64<<10)
				var w io.Writer = bw
				if framing == "chunked" {
					_, _ = io.WriteString(bw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
					w = chunkWriter{bw}
				} else {
					_, _ = fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
				}
				sum, err := patterned(w, size, 7)
				if framing == "chunked" {
					_, _ = io.WriteString(bw, "0\r\n\r\n")
				}
				if err == nil {
					err = bw.Flush()
				}
				if err == nil {
					sums <- sum
				}
			})
			p, url := startProxy(t, plainConfig, map[string]string{"up": addr})
			resp, _ := streamGet(t, url, "/big")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if framing == "chunked" {
				if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
					t.Fatalf("framing: Transfer-Encoding %v, Content-Length %d", resp.TransferEncoding, resp.ContentLength)
				}
			} else if resp.ContentLength != size {
				t.Fatalf("framing: Content-Length %d, Transfer-Encoding %v", resp.ContentLength, resp.TransferEncoding)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil || n != size {
				t.Fatalf("read %d bytes, %v", n, err)
			}
			var got [32]byte
			copy(got[:], h.Sum(nil))
			if want := <-sums; got != want {
				t.Fatal("the body arrived changed")
			}
			// The upstream connection went back to the pool, or was
			// closed: none is left busy.
			ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
			eventually(t, 5*time.Second, "the endpoint to be idle", func() bool { return ep.Active() == 0 })
		})
	}
}

// An upstream that dies mid-body gives the client a truncated response
// and a closed connection, not a hang; the upstream connection is closed.
func TestH1UpstreamDiesMidBody(t *testing.T) {
	for _, framing := range []string{"content-length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			addr := bodyUpstream(t, func(c net.Conn) {
				if framing == "chunked" {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
					_, _ = chunkWriter{c}.Write([]byte(strings.Repeat("x", 1000)))
				} else {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
					_, _ = io.WriteString(c, strings.Repeat("x", 1000))
				}
				time.Sleep(50 * time.Millisecond) // the first bytes leave on their own
				// and the connection closes (the deferred Close)
			})
			p, url := startProxy(t, plainConfig, map[string]string{"up": addr})
			resp, _ := streamGet(t, url, "/die")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil || isNetTimeout(err) {
				t.Fatalf("read %d bytes, error %v: want a truncated body on a closed connection", n, err)
			}
			// A chunked body is flushed chunk by chunk, so what came before
			// the break reached the client; a Content-Length body goes
			// through the server's write buffer (what was in it is lost
			// with the connection).
			if framing == "chunked" && n < 1000 || n >= 1000000 {
				t.Fatalf("read %d bytes before the break", n)
			}
			ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
			eventually(t, 5*time.Second, "the upstream connection to close", func() bool { return ep.Conns() == 0 && ep.Active() == 0 })
		})
	}
}

// An upstream that stalls mid-body is cut at the cluster's idle_timeout:
// the client's connection closes instead of waiting forever.
func TestH1StalledUpstreamBodyIsCut(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		<-release
	})
	cfg := strings.Replace(plainConfig, `endpoints: [{address: "{{up}}"}]`, `endpoints: [{address: "{{up}}"}]
    idle_timeout: 300ms`, 1)
	p, url := startProxy(t, cfg, map[string]string{"up": addr})
	resp, _ := streamGet(t, url, "/stall")
	b, err := io.ReadAll(resp.Body)
	if err == nil || isNetTimeout(err) || string(b) != "hello" {
		t.Fatalf("read %q, %v: want the first chunk, then a closed connection", b, err)
	}
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	eventually(t, 5*time.Second, "the upstream connection to close", func() bool { return ep.Conns() == 0 && ep.Active() == 0 })
}

// A client that goes away mid-download closes the upstream connection:
// the upstream's writes fail instead of filling a buffer nobody reads.
func TestH1ClientGoneClosesUpstream(t *testing.T) {
	upDone := make(chan error, 1)
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := []byte(strings.Repeat("z", 32<<10))
		for {
			if _, err := (chunkWriter{c}).Write(chunk); err != nil {
				upDone <- err
				return
			}
		}
	})
	p, url := startProxy(t, plainConfig, map[string]string{"up": addr})
	resp, c := streamGet(t, url, "/endless")
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	select {
	case <-upDone:
	case <-time.After(15 * time.Second):
		t.Fatal("the upstream kept writing after the client left")
	}
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	eventually(t, 5*time.Second, "the upstream connection to close", func() bool { return ep.Conns() == 0 && ep.Active() == 0 })
}

// A Wasm body filter (the body guest: Pause until end_of_stream, then
// rewrite) still sees a streamed HTTP/1.1 response whole and rewrites it;
// the client gets the rewritten body with its length. Past the filter's
// max_body_bytes, the client gets a 500 and the event is counted.
func TestH1WasmFilterOnStreamedResponse(t *testing.T) {
	module := guestFile(t, t.TempDir(), "body")
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < 3; i++ {
			_, _ = chunkWriter{c}.Write([]byte(fmt.Sprintf("upstream part %d;", i)))
			time.Sleep(5 * time.Millisecond) // separate reads, most likely
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	cfg := `
filters:
  - name: body
    module: {path: {{module}}}
    max_body_bytes: {{max}}
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [body]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`
	t.Run("rewritten", func(t *testing.T) {
		_, url := startProxy(t, cfg, map[string]string{"up": addr, "module": module, "max": "1024"})
		resp, _ := streamGet(t, url, "/")
		b, err := io.ReadAll(resp.Body)
		want := "<<UPSTREAM part 0;UPSTREAM part 1;UPSTREAM part 2;>>"
		if err != nil || resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("%d %q %v, want %q", resp.StatusCode, b, err, want)
		}
		if resp.ContentLength != int64(len(want)) {
			t.Fatalf("Content-Length %d, want %d", resp.ContentLength, len(want))
		}
	})
	t.Run("over max_body_bytes", func(t *testing.T) {
		p, url := startProxy(t, cfg, map[string]string{"up": addr, "module": module, "max": "20"})
		resp, _ := streamGet(t, url, "/")
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 500 {
			t.Fatalf("status %d, want 500", resp.StatusCode)
		}
		if n, ok := metricValue(t, p, "weft_wasm_events_total", "plugin", "body", "event", "body_too_large"); !ok || n < 1 {
			t.Fatalf("body_too_large counted %v (%t)", n, ok)
		}
	})
}

// A chunked body's trailers pass through, declared or not.
func TestH1StreamsTrailers(t *testing.T) {
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprint("declared=", declared), func(t *testing.T) {
			addr := bodyUpstream(t, func(c net.Conn) {
				head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
				if declared {
					head += "Trailer: X-Sum\r\n"
				}
				_, _ = io.WriteString(c, head+"\r\n5\r\nhello\r\n")
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, "6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
			})
			_, url := startProxy(t, plainConfig, map[string]string{"up": addr})
			resp, _ := streamGet(t, url, "/t")
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "hello world" {
				t.Fatalf("%q, %v", b, err)
			}
			if declared && resp.Trailer.Get("X-Sum") != "42" {
				t.Fatalf("trailers %v", resp.Trailer)
			}
		})
	}
}

// A retry decides on the status before any body byte went to the client:
// an answer whose body is still streaming is dropped (its connection
// closed) and the retry's answer is what the client gets.
func TestH1RetryDropsAStreamingAnswer(t *testing.T) {
	var n atomic.Int32
	addr := bodyUpstream(t, func(c net.Conn) {
		if n.Add(1) == 1 {
			_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n")
			time.Sleep(20 * time.Millisecond)
			_, _ = chunkWriter{c}.Write([]byte("busy"))
			_, _ = io.WriteString(c, "0\r\n\r\n")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	cfg := strings.Replace(plainConfig, "route: {cluster: up}", "route: {cluster: up, retry: {attempts: 2, on: [5xx], backoff_base: 1ms}}", 1)
	p, url := startProxy(t, cfg, map[string]string{"up": addr})
	resp, _ := streamGet(t, url, "/")
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("%d %q %v", resp.StatusCode, b, err)
	}
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	eventually(t, 5*time.Second, "the upstream connections to close", func() bool { return ep.Conns() == 0 && ep.Active() == 0 })
}

// The access log counts a streamed body's bytes as they went, and says why
// a streamed answer ended early.
func TestH1StreamedAccessLog(t *testing.T) {
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		time.Sleep(10 * time.Millisecond)
		for i := 0; i < 4; i++ {
			_, _ = chunkWriter{c}.Write([]byte(strings.Repeat("a", 25000)))
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	brokenAddr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
		time.Sleep(10 * time.Millisecond)
		_, _ = io.WriteString(c, strings.Repeat("b", 10000))
	})
	path := t.TempDir() + "/access.log"
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [path, status, response_flags, bytes_sent]}\n", 1)
	cfg = strings.Replace(cfg, "          - match: {prefix: /}\n", "          - match: {prefix: /broken}\n            route: {cluster: broken}\n          - match: {prefix: /}\n", 1)
	cfg += "  - name: broken\n    endpoints: [{address: \"{{broken}}\"}]\n"
	_, url := startProxy(t, cfg, map[string]string{"up": addr, "broken": brokenAddr})
	resp, _ := streamGet(t, url, "/whole")
	if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 100000 {
		t.Fatalf("%d, %v", n, err)
	}
	resp, _ = streamGet(t, url, "/broken")
	_, _ = io.Copy(io.Discard, resp.Body)
	var log string
	eventually(t, 5*time.Second, "two access log lines", func() bool {
		b, _ := os.ReadFile(path)
		log = string(b)
		return strings.Count(log, "\n") >= 2
	})
	for _, want := range []string{`"path":"/whole","status":200,"response_flags":"-","bytes_sent":100000`, `"path":"/broken","status":200,"response_flags":"UPE","bytes_sent":10000`} {
		if !strings.Contains(log, want) {
			t.Errorf("no %s in\n%s", want, log)
		}
	}
}

// Streamed answers that end every way leave no goroutine behind: read to
// the end, upstream dead mid-body, upstream stalled past idle_timeout,
// client gone mid-body.
func TestH1StreamedBodiesLeaveNoGoroutines(t *testing.T) {
	stall := make(chan struct{})
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		_, _ = chunkWriter{c}.Write([]byte(strings.Repeat("s", 1000)))
		switch mode.Load() {
		case 0: // whole
			_, _ = io.WriteString(c, "0\r\n\r\n")
		case 1: // dies: the deferred Close
		case 2: // stalls
			<-stall
		case 3: // endless, until the client's departure reaches here
			for {
				if _, err := (chunkWriter{c}).Write([]byte(strings.Repeat("e", 32<<10))); err != nil {
					return
				}
			}
		}
	})
	cfg := strings.Replace(plainConfig, `endpoints: [{address: "{{up}}"}]`, `endpoints: [{address: "{{up}}"}]
    idle_timeout: 200ms`, 1)
	p, url := startProxy(t, cfg, map[string]string{"up": addr})
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	mode.Store(0)
	resp, _ := streamGet(t, url, "/warm")
	_, _ = io.Copy(io.Discard, resp.Body)
	leaks := []goleak.Option{goleak.IgnoreCurrent(),
		// a server's idle worker, parked until its next connection (a busy
		// one has the handler or the body copy on top instead)
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc")}
	for m, name := range []string{"whole", "dies", "stalls", "client gone"} {
		mode.Store(int32(m))
		resp, c := streamGet(t, url, "/"+name)
		if m == 3 {
			_, _ = io.ReadFull(resp.Body, make([]byte, 100<<10))
			_ = c.Close()
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = c.Close()
		}
		eventually(t, 5*time.Second, name+": the endpoint to be idle", func() bool { return ep.Active() == 0 })
	}
	close(stall)
	if err := goleak.Find(leaks...); err != nil {
		t.Fatalf("goroutines left: %v", err)
	}
}

// mode picks TestH1StreamedBodiesLeaveNoGoroutines's upstream behaviour.
var mode atomic.Int32

// An HTTP/1.0 client cannot take chunked framing: an answer that would go
// chunked reaches it whole, with its length.
func TestH1StreamToHTTP10Client(t *testing.T) {
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		time.Sleep(10 * time.Millisecond)
		_, _ = chunkWriter{c}.Write([]byte("hello"))
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	_, url := startProxy(t, plainConfig, map[string]string{"up": addr})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.0\r\nHost: svc\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "hello" || len(resp.TransferEncoding) != 0 || resp.ContentLength != 5 {
		t.Fatalf("%q %v: Transfer-Encoding %v, Content-Length %d", b, err, resp.TransferEncoding, resp.ContentLength)
	}
}

// A chunk size that is not hex from the upstream ends the streamed answer
// as the upstream's fault (UPE) after the chunks before it, and weft goes
// on serving: the error fasthttp's server logs for the body once had a nil
// error inside and panicked, taking the process down.
func TestH1MalformedUpstreamChunk(t *testing.T) {
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
	})
	path := t.TempDir() + "/access.log"
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [path, response_flags, bytes_sent]}\n", 1)
	_, url := startProxy(t, cfg, map[string]string{"up": addr})
	for i := 0; i < 2; i++ {
		resp, _ := streamGet(t, url, "/bad")
		got, err := io.ReadAll(resp.Body)
		if err == nil || string(got) != "hello" {
			t.Fatalf("request %d: %q, %v; want hello and the body cut short", i, got, err)
		}
	}
	eventually(t, 10*time.Second, "two access log lines", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), `"path":"/bad","response_flags":"UPE","bytes_sent":5`) == 2
	})
}
