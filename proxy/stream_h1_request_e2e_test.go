package proxy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Streamed HTTP/1.1 request bodies: raw clients write exactly the bytes a
// case needs, when it needs them; upstreams read the body with net/http's
// parser and answer with what they saw.

// uploadUpstream serves each request on its own connection with serve,
// which reads the body and returns the status and body to answer.
func uploadUpstream(t *testing.T, serve func(r *http.Request) (int, string)) string {
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
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					status, body := serve(r)
					_, _ = io.Copy(io.Discard, r.Body)
					if _, err := fmt.Fprintf(c, "HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// hashBody answers the SHA-256 and length of the request body.
func hashBody(r *http.Request) (int, string) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		return 500, err.Error()
	}
	return 200, fmt.Sprintf("%x %d", h.Sum(nil), n)
}

// upload opens a connection to the proxy and writes a request head for
// method /path with the extra header lines; the test then writes the body.
func upload(t *testing.T, proxyURL, method, headers string) (net.Conn, *bufio.Reader) {
	t.Helper()
	return uploadTo(t, proxyURL, method, "/up", headers)
}

// uploadTo is upload to path.
func uploadTo(t *testing.T, proxyURL, method, path, headers string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // a safety net: a hang fails
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: svc\r\n%s\r\n", method, path, headers); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

const uploadConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    limits: {max_body_bytes: {{max}}}
    filters: [{{filters}}]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up{{retry}}}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

func uploadVars(up string, kv ...string) map[string]string {
	v := map[string]string{"up": up, "max": "1073741824", "filters": "", "retry": ""}
	for i := 0; i+1 < len(kv); i += 2 {
		v[kv[i]] = kv[i+1]
	}
	return v
}

// A 64 MiB upload, generated as it is sent, reaches the upstream byte for
// byte with either framing; the proxy reads it at the client's pace (its
// memory is measured in TestH1UploadFigures, not asserted here).
func TestH1StreamsLargeUpload(t *testing.T) {
	const size = 64 << 20
	addr := uploadUpstream(t, hashBody)
	_, url := startProxy(t, uploadConfig, uploadVars(addr))
	for _, framing := range []string{"content-length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			head := fmt.Sprintf("Content-Length: %d\r\n", size)
			if framing == "chunked" {
				head = "Transfer-Encoding: chunked\r\n"
			}
			c, br := upload(t, url, "POST", head)
			sent := make(chan [32]byte, 1)
			go func() {
				var w io.Writer = c
				if framing == "chunked" {
					w = chunkWriter{c}
				}
				sum, _ := patterned(w, size, 7)
				if framing == "chunked" {
					_, _ = io.WriteString(c, "0\r\n\r\n")
				}
				sent <- sum
			}()
			status, body := readAnswer(t, br)
			sum := <-sent
			if want := fmt.Sprintf("%s %d", hex.EncodeToString(sum[:]), size); status != 200 || body != want {
				t.Fatalf("%d %q, want %q", status, body, want)
			}
		})
	}
}

// The first chunk of a chunked upload reaches the upstream before the
// client sends the last: the client waits for the upstream to have it.
func TestH1ChunkedUploadStreamsToUpstream(t *testing.T) {
	gotFirst := make(chan struct{})
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		first := make([]byte, len("first"))
		if _, err := io.ReadFull(r.Body, first); err != nil {
			return 500, err.Error()
		}
		close(gotFirst)
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			return 500, err.Error()
		}
		return 200, string(first) + string(rest)
	})
	_, url := startProxy(t, uploadConfig, uploadVars(addr))
	c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	_, _ = chunkWriter{c}.Write([]byte("first"))
	select {
	case <-gotFirst:
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the upstream did not get the first chunk while the upload was open")
	}
	_, _ = chunkWriter{c}.Write([]byte("last"))
	_, _ = io.WriteString(c, "0\r\n\r\n")
	if status, body := readAnswer(t, br); status != 200 || body != "firstlast" {
		t.Fatalf("%d %q", status, body)
	}
}

// A Wasm filter sees a streamed request body chunk by chunk, with
// end_of_stream false until the last call; what it passes on is what the
// upstream gets.
func TestH1WasmFilterSeesRequestChunks(t *testing.T) {
	module := guestFile(t, t.TempDir(), "chunks")
	got := make(chan struct{}, 4)
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		var all []byte
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			all = append(all, buf[:n]...)
			if n > 0 {
				select {
				case got <- struct{}{}:
				default:
				}
			}
			if err == io.EOF {
				return 200, string(all)
			}
			if err != nil {
				return 500, err.Error()
			}
		}
	})
	cfg := "filters:\n  - name: chunks\n    module: {path: " + module + "}\n" + uploadConfig
	_, url := startProxy(t, cfg, uploadVars(addr, "filters", "chunks"))
	c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	_, _ = chunkWriter{c}.Write([]byte("alpha"))
	<-got // the upstream has the first chunk: the next is a separate call
	_, _ = chunkWriter{c}.Write([]byte("beta"))
	_, _ = io.WriteString(c, "0\r\n\r\n")
	status, body := readAnswer(t, br)
	if status != 200 {
		t.Fatalf("%d %q", status, body)
	}
	marks := regexp.MustCompile(`<(\d+):(true|false)>`)
	calls := marks.FindAllStringSubmatch(body, -1)
	data := marks.ReplaceAllString(body, "")
	if data != "alphabeta" || len(calls) < 3 {
		t.Fatalf("upstream got %q: want alpha and beta in separate calls, then the end", body)
	}
	for i, c := range calls {
		if last := i == len(calls)-1; (c[2] == "true") != last {
			t.Fatalf("call %d of %d has end_of_stream %s: %q", i+1, len(calls), c[2], body)
		}
	}
}

// A filter that buffers the body (StopIterationAndBuffer until the end)
// gets it whole and rewrites it, headers included; past the filter's
// max_body_bytes the client gets a 413 and the event is counted.
func TestH1WasmFilterBuffersStreamedRequest(t *testing.T) {
	module := guestFile(t, t.TempDir(), "body")
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		b, _ := io.ReadAll(r.Body)
		return 200, r.Header.Get("x-original-body-size") + " " + string(b)
	})
	cfg := "filters:\n  - name: body\n    module: {path: " + module + "}\n    max_body_bytes: {{fmax}}\n" + uploadConfig
	payload := strings.Repeat("abcdefgh", 4<<10) // 32 KiB: streamed, not whole
	send := func(url string) (int, string) {
		c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
		go func() { // a refusal may come before the body is all sent
			for i := 0; i < len(payload); i += 8 << 10 {
				_, _ = chunkWriter{c}.Write([]byte(payload[i : i+8<<10]))
			}
			_, _ = io.WriteString(c, "0\r\n\r\n")
		}()
		return readAnswer(t, br)
	}
	t.Run("buffered", func(t *testing.T) {
		_, url := startProxy(t, cfg, uploadVars(addr, "filters", "body", "fmax", "65536"))
		status, body := send(url)
		// (The guest wraps the response body in << >>.)
		want := "<<" + fmt.Sprint(len(payload)) + " " + strings.ToUpper(payload) + " (rewritten by wasm)>>"
		if status != 200 || body != want {
			t.Fatalf("%d %.80q..., want %.80q...", status, body, want)
		}
	})
	t.Run("over max_body_bytes", func(t *testing.T) {
		p, url := startProxy(t, cfg, uploadVars(addr, "filters", "body", "fmax", "10000"))
		if status, _ := send(url); status != 413 {
			t.Fatalf("status %d, want 413", status)
		}
		if n, ok := metricValue(t, p, "weft_wasm_events_total", "plugin", "body", "event", "body_too_large"); !ok || n < 1 {
			t.Fatalf("body_too_large counted %v (%t)", n, ok)
		}
	})
}

// The listener's max_body_bytes bounds a body's size: a Content-Length
// over it is refused before the upstream is called, a chunked body that
// grows past it is refused when it does; both are counted.
func TestH1UploadOverListenerLimit(t *testing.T) {
	var calls atomic.Int32
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		return 200, "ok"
	})
	p, url := startProxy(t, uploadConfig, uploadVars(addr, "max", "16384"))
	body := strings.Repeat("x", 20000)

	c, br := upload(t, url, "POST", "Content-Length: 20000\r\n")
	go func(c net.Conn) { _, _ = io.WriteString(c, body) }(c) // the server reads its first 8 KiB with the headers
	if status, _ := readAnswer(t, br); status != 413 {
		t.Fatalf("content-length: status %d, want 413", status)
	}
	_ = c.Close()
	if calls.Load() != 0 {
		t.Fatal("the upstream was called for a body over the limit")
	}

	c, br = upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	go func(c net.Conn) { _, _ = chunkWriter{c}.Write([]byte(body)); _, _ = io.WriteString(c, "0\r\n\r\n") }(c)
	if status, _ := readAnswer(t, br); status != 413 {
		t.Fatalf("chunked: status %d, want 413", status)
	}
	if n, ok := metricValue(t, p, "weft_downstream_refused_total", "listener", "main", "reason", "body_too_large"); !ok || n != 2 {
		t.Fatalf("refusals counted %v (%t), want 2", n, ok)
	}

	// Under the limit, the same connection-level path passes it.
	c, br = upload(t, url, "POST", "Content-Length: 16000\r\n")
	_, _ = io.WriteString(c, body[:16000])
	if status, b := readAnswer(t, br); status != 200 || b != "ok" {
		t.Fatalf("under the limit: %d %q", status, b)
	}
}

// A streamed body is retried while the retry buffer still holds all of it
// (64 KiB); a longer one is not, and the client gets the failed answer.
func TestH1StreamedUploadRetry(t *testing.T) {
	var tries atomic.Int32
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		code, sum := hashBody(r)
		if tries.Add(1)%2 == 1 {
			return 503, "busy"
		}
		return code, sum
	})
	_, url := startProxy(t, uploadConfig, uploadVars(addr, "retry", ", retry: {attempts: 2, on: [5xx], backoff_base: 1ms}"))
	for _, tc := range []struct {
		size int64
		want int
	}{{40 << 10, 200}, {200 << 10, 503}} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			tries.Store(0)
			c, br := upload(t, url, "PUT", "Transfer-Encoding: chunked\r\n")
			sent := make(chan [32]byte, 1)
			go func() {
				sum, _ := patterned(chunkWriter{c}, tc.size, 3)
				_, _ = io.WriteString(c, "0\r\n\r\n")
				sent <- sum
			}()
			status, body := readAnswer(t, br)
			sum := <-sent
			if status != tc.want {
				t.Fatalf("status %d %q, want %d", status, body, tc.want)
			}
			if want := fmt.Sprintf("%x %d", sum, tc.size); status == 200 && body != want {
				t.Fatalf("retried body %q, want %q", body, want)
			}
			if n := tries.Load(); (tc.want == 200 && n != 2) || (tc.want == 503 && n != 1) {
				t.Fatalf("%d tries", n)
			}
		})
	}
}

// A client that breaks off mid-body: the upstream's request is cut too
// (it sees the body end early, never a complete request).
func TestH1UploadClientGoneCutsUpstream(t *testing.T) {
	cut := make(chan error, 1)
	addr := uploadUpstream(t, func(r *http.Request) (int, string) {
		_, err := io.Copy(io.Discard, r.Body)
		cut <- err
		return 200, "complete"
	})
	_, url := startProxy(t, uploadConfig, uploadVars(addr))
	c, _ := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	_, _ = chunkWriter{c}.Write([]byte(strings.Repeat("x", 10000)))
	_ = c.Close()
	select {
	case err := <-cut:
		if err == nil {
			t.Fatal("the upstream got a complete body from a client that broke off")
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the upstream's request was not cut")
	}
}

// An HTTP/1.1 upstream that answers before taking the body (here a 401,
// then it closes) has its answer passed on, not a 502; the client's
// connection closes, its body unread.
func TestH1UploadEarlyAnswer(t *testing.T) {
	addr := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied")
	})
	_, url := startProxy(t, uploadConfig, uploadVars(addr))
	c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
	go func() {
		_, _ = patterned(chunkWriter{c}, 16<<20, 1) // more than the sockets hold
		_, _ = io.WriteString(c, "0\r\n\r\n")
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || string(b) != "denied" || !resp.Close {
		t.Fatalf("%d %q close=%t", resp.StatusCode, b, resp.Close)
	}
}

// A try that could not connect read none of the body: a streamed upload
// goes to the other endpoint, whatever its method and length.
func TestH1StreamedUploadAfterConnectFailure(t *testing.T) {
	live := uploadUpstream(t, hashBody)
	dead := testserver.RefusedAddr(t)
	cfg := strings.Replace(uploadConfig, `endpoints: [{address: "{{up}}"}]`, `endpoints: [{address: "{{up}}"}, {address: "{{dead}}"}]`, 1)
	vars := uploadVars(live)
	vars["dead"] = dead
	_, url := startProxy(t, cfg, vars)
	for i := 0; i < 4; i++ { // round robin: both orders
		c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
		sent := make(chan [32]byte, 1)
		go func() {
			sum, _ := patterned(chunkWriter{c}, 200<<10, uint64(i))
			_, _ = io.WriteString(c, "0\r\n\r\n")
			sent <- sum
		}()
		status, body := readAnswer(t, br)
		sum := <-sent
		if want := fmt.Sprintf("%x %d", sum, 200<<10); status != 200 || body != want {
			t.Fatalf("upload %d: %d %q, want %q", i, status, body, want)
		}
	}
}
