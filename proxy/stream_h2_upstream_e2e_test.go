package proxy

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// HTTP/1.1 clients of an HTTP/2 cluster: the answer streams back as it
// comes, and a streamed upload streams up.

const h2UpstreamConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    limits: {max_body_bytes: 1073741824}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    protocol: http2
    endpoints: [{address: "{{up}}"}]
`

// h2cUpstream serves h with prior-knowledge h2c on loopback.
func h2cUpstream(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestH1ClientStreamsFromHTTP2Cluster(t *testing.T) {
	const download = 80 << 20 // over the 64 MiB an answer was once buffered to
	next := make(chan struct{})
	addr := h2cUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-next // the client has event one before the upstream writes two
			_, _ = io.WriteString(w, "data: two\n\n")
		case "/download":
			w.Header().Set("Content-Length", strconv.Itoa(download))
			_, _ = patterned(w, download, 5)
		case "/trailers":
			w.Header().Set("Trailer", "X-Checksum")
			_, _ = io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Checksum", "abc")
		case "/early":
			// Answers before reading the body, and never reads it.
			_, _ = io.WriteString(w, "early")
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%x %d", h.Sum(nil), n)
		}
	})
	_, url := startProxy(t, h2UpstreamConfig, map[string]string{"up": addr})

	t.Run("events", func(t *testing.T) {
		resp, _ := streamGet(t, url, "/events")
		br := bufio.NewReader(resp.Body)
		read := func() string {
			var ev string
			for !strings.HasSuffix(ev, "\n\n") {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("got %q: %v", ev+line, err)
				}
				ev += line
			}
			return ev
		}
		if ev := read(); ev != "data: one\n\n" {
			t.Fatalf("first event %q", ev)
		}
		close(next)
		if ev := read(); ev != "data: two\n\n" {
			t.Fatalf("second event %q", ev)
		}
	})
	t.Run("download", func(t *testing.T) {
		resp, _ := streamGet(t, url, "/download")
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		want, _ := patterned(io.Discard, download, 5)
		if err != nil || n != download || string(h.Sum(nil)) != string(want[:]) {
			t.Fatalf("%d bytes, %v, sum match %t", n, err, string(h.Sum(nil)) == string(want[:]))
		}
	})
	t.Run("trailers", func(t *testing.T) {
		resp, _ := streamGet(t, url, "/trailers")
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != "body" || resp.Trailer.Get("X-Checksum") != "abc" {
			t.Fatalf("%q %v trailers %v", b, err, resp.Trailer)
		}
	})
	t.Run("upload", func(t *testing.T) {
		const size = 4 << 20
		c, br := uploadTo(t, url, "POST", "/upload", "Transfer-Encoding: chunked\r\n")
		sent := make(chan [32]byte, 1)
		go func() {
			sum, _ := patterned(chunkWriter{c}, size, 9)
			_, _ = io.WriteString(c, "0\r\n\r\n")
			sent <- sum
		}()
		status, body := readAnswer(t, br)
		sum := <-sent
		if want := fmt.Sprintf("%x %d", sum, size); status != 200 || body != want {
			t.Fatalf("%d %q, want %q", status, body, want)
		}
	})
	// An upstream that answers without reading the body: its answer goes
	// to the client once the transport gave up on the body, and the
	// client's connection closes (its body is left unread).
	t.Run("early answer", func(t *testing.T) {
		c, br := uploadTo(t, url, "POST", "/early", "Transfer-Encoding: chunked\r\n")
		_, _ = chunkWriter{c}.Write([]byte("the body nobody reads"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "early" || !resp.Close {
			t.Fatalf("%d %q close=%t %v", resp.StatusCode, b, resp.Close, resp.Header)
		}
	})
}
