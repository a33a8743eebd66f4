package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// A Content-Length body of at least cluster's splice threshold, with no
// body filter, between plain TCP connections goes from socket to socket
// in the kernel: it arrives byte for byte, the upstream connection goes
// back to the pool for the next request, and the access log still tells
// an upstream that broke mid-body (UPE, the bytes that went) from a whole
// answer.
func TestH1SplicedDownload(t *testing.T) {
	const size = 3<<20 + 12345
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	okAddr := bodyUpstream(t, func(c net.Conn) {
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(body)
		// Keep-alive: a second request on this connection gets the same.
		buf := make([]byte, 4096)
		if n, err := c.Read(buf); err == nil && bytes.HasPrefix(buf[:n], []byte("GET ")) {
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
			_, _ = c.Write(body)
		}
	})
	const broken = 600000
	brokenAddr := bodyUpstream(t, func(c net.Conn) {
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(body[:broken])
	})
	path := t.TempDir() + "/access.log"
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [path, status, response_flags, bytes_sent]}\n", 1)
	cfg = strings.Replace(cfg, "          - match: {prefix: /}\n", "          - match: {prefix: /broken}\n            route: {cluster: broken}\n          - match: {prefix: /}\n", 1)
	cfg += "  - name: broken\n    endpoints: [{address: \"{{broken}}\"}]\n"
	p, url := startProxy(t, cfg, map[string]string{"up": okAddr, "broken": brokenAddr})
	for i := 0; i < 2; i++ {
		resp, _ := streamGet(t, url, "/whole")
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("request %d: %d, %d bytes (want %d, equal %v), %v", i, resp.StatusCode, len(got), size, bytes.Equal(got, body), err)
		}
	}
	if n, ok := metricValue(t, p, "weft_upstream_connections_opened_total", "cluster", "up"); !ok || n != 1 {
		t.Errorf("%v upstream connections opened for two requests (counted %t), want 1 (reused)", n, ok)
	}
	resp, _ := streamGet(t, url, "/broken")
	if got, _ := io.Copy(io.Discard, resp.Body); got != broken {
		t.Errorf("broken answer: %d bytes reached the client, want %d", got, broken)
	}
	var log string
	eventually(t, 10*time.Second, "three access log lines", func() bool {
		b, _ := os.ReadFile(path)
		log = string(b)
		return strings.Count(log, "\n") >= 3
	})
	for _, want := range []string{
		fmt.Sprintf(`"path":"/whole","status":200,"response_flags":"-","bytes_sent":%d`, size),
		fmt.Sprintf(`"path":"/broken","status":200,"response_flags":"UPE","bytes_sent":%d`, broken),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %s in\n%s", want, log)
		}
	}
}

// A chunked answer with no body filter goes to a plain TCP client a chunk
// per writev, written around fasthttp's writer: it arrives byte for byte,
// with the last chunk and trailers fasthttp writes after it, and the
// connection serves the next request.
func TestH1ChunkedDownloadWrittenDirect(t *testing.T) {
	body := make([]byte, 2<<20+333)
	for i := range body {
		body[i] = byte(i*13 + i>>9)
	}
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 50000)
			_, _ = chunkWriter{c}.Write(rest[:n])
			rest = rest[n:]
		}
		_, _ = io.WriteString(c, "0\r\nX-Sum: end\r\n\r\n")
	})
	_, url := startProxy(t, plainConfig, map[string]string{"up": addr})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	// Twice on one connection: the framing ended where it should.
	for i := 0; i < 2; i++ {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.ContentLength != -1 {
			t.Fatalf("request %d: %d, %d bytes (want %d, equal %v, length %d), %v", i, resp.StatusCode, len(got), len(body), bytes.Equal(got, body), resp.ContentLength, err)
		}
		if v := resp.Trailer.Get("X-Sum"); v != "end" {
			t.Fatalf("request %d: trailers %v, want x-sum end", i, resp.Trailer)
		}
	}
}

// A spliced answer that ends every way leaves no goroutine behind and is
// logged for what ended it: read to the end (-), upstream dead mid-body
// (UPE), upstream stalled past idle_timeout (SI), client gone mid-body (DC).
func TestH1SplicedBodiesEndEveryWay(t *testing.T) {
	var how atomic.Int32
	stall := make(chan struct{})
	part := bytes.Repeat([]byte("s"), 512<<10)
	addr := bodyUpstream(t, func(c net.Conn) {
		m := how.Load()
		size := 4 << 20
		if m == 3 {
			size = 1 << 30 // more than the client's socket buffers can hold
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		switch m {
		case 0: // whole
			for i := 0; i < 8; i++ {
				_, _ = c.Write(part)
			}
		case 1: // dies: the deferred Close
			_, _ = c.Write(part)
		case 2: // stalls
			_, _ = c.Write(part)
			<-stall
		case 3: // until the client's departure reaches here
			for {
				if _, err := c.Write(part); err != nil {
					return
				}
			}
		}
	})
	path := t.TempDir() + "/access.log"
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [path, response_flags]}\n", 1)
	cfg = strings.Replace(cfg, `endpoints: [{address: "{{up}}"}]`, `endpoints: [{address: "{{up}}"}]
    idle_timeout: 200ms`, 1)
	p, url := startProxy(t, cfg, map[string]string{"up": addr})
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	resp, _ := streamGet(t, url, "/warm")
	_, _ = io.Copy(io.Discard, resp.Body)
	leaks := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc")}
	names := []string{"whole", "dies", "stalls", "gone"}
	for m, name := range names {
		how.Store(int32(m))
		resp, c := streamGet(t, url, "/"+name)
		if m == 3 {
			_, _ = io.ReadFull(resp.Body, make([]byte, 100<<10))
			_ = c.Close()
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = c.Close()
		}
		eventually(t, 10*time.Second, name+": the endpoint to be idle", func() bool { return ep.Active() == 0 })
	}
	close(stall)
	var log string
	eventually(t, 10*time.Second, "five access log lines", func() bool {
		b, _ := os.ReadFile(path)
		log = string(b)
		return strings.Count(log, "\n") >= 5
	})
	for i, flags := range []string{"-", "UPE", "SI", "DC"} {
		if want := fmt.Sprintf(`"path":"/%s","response_flags":"%s"`, names[i], flags); !strings.Contains(log, want) {
			t.Errorf("no %s in\n%s", want, log)
		}
	}
	if err := goleak.Find(leaks...); err != nil {
		t.Fatalf("goroutines left: %v", err)
	}
}
