package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/cluster"
	"go.uber.org/goleak"
)

// A chunked answer with no body filter, between plain TCP connections,
// has its chunks' data spliced (those larger than the upstream reader;
// smaller ones copied whole, framing and all, in one write): every chunk
// size around the reader's arrives byte for byte, chunk extensions
// dropped, with its trailers; the upstream connection goes back to the
// pool and the client's serves the next request.
func TestH1SplicedChunkedDownload(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("splice is Linux only")
	}
	sizes := []int{1, 100, 16 << 10, 16<<10 + 1, 300000, 7, 1 << 20, 16<<10 - 1, 40000}
	for i := 0; i < 100; i++ { // small chunks, many to a read: gathered
		sizes = append(sizes, 1+i*37%500)
	}
	sizes = append(sizes, 70000)
	var body []byte
	for i, n := range sizes {
		for j := 0; j < n; j++ {
			body = append(body, byte(i*31+j*7+j>>10))
		}
	}
	// The answer goes in one write: how its pieces reach weft's reads
	// varies, what the client gets does not.
	var answer bytes.Buffer
	answer.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	rest := body
	for i, n := range sizes {
		ext := ""
		if i == 4 || i == 50 {
			ext = ";name=value"
		}
		fmt.Fprintf(&answer, "%x%s\r\n", n, ext)
		answer.Write(rest[:n])
		answer.WriteString("\r\n")
		rest = rest[n:]
	}
	answer.WriteString("0\r\nX-Sum: end\r\n\r\n")
	addr := bodyUpstreamRaw(t, func(c net.Conn, br *bufio.Reader) {
		for {
			_, _ = c.Write(answer.Bytes()) // to the request read, then to the next one
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
		}
	})
	p, url := startProxy(t, plainConfig, map[string]string{"up": addr})
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		before := cluster.SplicedResponseBytes()
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
		// The 1 MiB and 300,000-byte chunks less what the reader held of
		// each (16 KiB at most) went through the pipe.
		if n := cluster.SplicedResponseBytes() - before; n < 1<<20+300000-2*(16<<10) {
			t.Errorf("request %d: %d bytes spliced, want the large chunks' rests", i, n)
		}
	}
	if n, ok := metricValue(t, p, "weft_upstream_connections_opened_total", "cluster", "up"); !ok || n != 1 {
		t.Errorf("%v upstream connections opened for three requests (counted %t), want 1 (reused)", n, ok)
	}
}

// A spliced chunked answer that ends every way leaves no goroutine behind,
// is logged for what ended it, and counts the data bytes that reached the
// client: read to the end (-), upstream dead mid-chunk (UPE), a malformed
// chunk size (UPE), upstream stalled past idle_timeout mid-chunk (SI),
// client gone mid-body (DC).
func TestH1SplicedChunkedBodiesEndEveryWay(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("splice is Linux only")
	}
	var how atomic.Int32
	stall := make(chan struct{})
	part := bytes.Repeat([]byte("s"), 512<<10)
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		switch how.Load() {
		case 0: // whole: eight chunks of 512 KiB
			for i := 0; i < 8; i++ {
				_, _ = chunkWriter{c}.Write(part)
			}
			_, _ = io.WriteString(c, "0\r\n\r\n")
		case 1: // dies mid-chunk: the deferred Close
			_, _ = io.WriteString(c, "100000\r\n")
			_, _ = c.Write(part[:300000])
		case 2: // a chunk size that is not hex
			_, _ = chunkWriter{c}.Write(part)
			_, _ = io.WriteString(c, "zz\r\n")
		case 3: // stalls mid-chunk
			_, _ = io.WriteString(c, "100000\r\n")
			_, _ = c.Write(part[:300000])
			<-stall
		case 4: // until the client's departure reaches here
			for {
				if _, err := (chunkWriter{c}).Write(part); err != nil {
					return
				}
			}
		}
	})
	path := t.TempDir() + "/access.log"
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [path, response_flags, bytes_sent]}\n", 1)
	cfg = strings.Replace(cfg, `endpoints: [{address: "{{up}}"}]`, `endpoints: [{address: "{{up}}"}]
    idle_timeout: 300ms`, 1)
	p, url := startProxy(t, cfg, map[string]string{"up": addr})
	ep := p.snap.Load().byName["up"].c.Pick(0, false, nil)
	resp, _ := streamGet(t, url, "/warm")
	_, _ = io.Copy(io.Discard, resp.Body)
	leaks := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc")}
	names := []string{"whole", "dies", "badsize", "stalls", "gone"}
	wantBytes := []int64{5 + 8*512<<10, 5 + 300000, 5 + 512<<10, 5 + 300000, -1}
	for m, name := range names {
		how.Store(int32(m))
		before := cluster.SplicedResponseBytes()
		resp, c := streamGet(t, url, "/"+name)
		var got int64
		var err error
		if m == 4 {
			_, _ = io.ReadFull(resp.Body, make([]byte, 100<<10))
			_ = c.Close()
		} else {
			got, err = io.Copy(io.Discard, resp.Body)
			_ = c.Close()
		}
		switch {
		case m == 0 && (err != nil || got != wantBytes[0]):
			t.Errorf("whole: %d bytes, %v; want %d", got, err, wantBytes[0])
		case m > 0 && m < 4 && (err == nil || got != wantBytes[m]):
			t.Errorf("%s: %d bytes, %v; want %d and an error (the body cut short)", name, got, err, wantBytes[m])
		}
		if m < 4 && cluster.SplicedResponseBytes() == before {
			t.Errorf("%s: nothing spliced", name)
		}
		eventually(t, 10*time.Second, name+": the endpoint to be idle", func() bool { return ep.Active() == 0 })
	}
	close(stall)
	var log string
	eventually(t, 10*time.Second, "six access log lines", func() bool {
		b, _ := os.ReadFile(path)
		log = string(b)
		return strings.Count(log, "\n") >= 6
	})
	for i, flags := range []string{"-", "UPE", "UPE", "SI", "DC"} {
		want := fmt.Sprintf(`"path":"/%s","response_flags":"%s","bytes_sent":%d`, names[i], flags, wantBytes[i])
		if wantBytes[i] < 0 {
			want = fmt.Sprintf(`"path":"/%s","response_flags":"%s"`, names[i], flags)
		}
		if !strings.Contains(log, want) {
			t.Errorf("no %s in\n%s", want, log)
		}
	}
	if err := goleak.Find(leaks...); err != nil {
		t.Fatalf("goroutines left: %v", err)
	}
}
