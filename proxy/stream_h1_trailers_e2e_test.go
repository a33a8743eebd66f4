package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// trailerEcho answers what the upstream received: the body, then each
// trailer as "name=value" in name order.
func trailerEcho(r *http.Request) string {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return "error: " + err.Error()
	}
	var tr []string
	for k, vs := range r.Trailer {
		for _, v := range vs {
			tr = append(tr, strings.ToLower(k)+"="+v)
		}
	}
	sort.Strings(tr)
	return string(b) + " " + strings.Join(tr, ",")
}

// The trailers of a chunked HTTP/1.1 request that streams through weft
// reach the upstream: as chunked trailers on an HTTP/1.1 upstream, as a
// trailers HEADERS frame on an HTTP/2 one, with and without a body
// filter, announced (Trailer:) or not.
func TestH1RequestTrailersReachUpstream(t *testing.T) {
	h1 := uploadUpstream(t, func(r *http.Request) (int, string) { return 200, trailerEcho(r) })
	h2 := h2cUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, trailerEcho(r)) })
	module := guestFile(t, t.TempDir(), "chunks")
	for _, tc := range []struct {
		name, cfg string
		vars      map[string]string
	}{
		{"h1", uploadConfig, uploadVars(h1)},
		{"h1 filtered", "filters:\n  - name: chunks\n    module: {path: " + module + "}\n" + uploadConfig, uploadVars(h1, "filters", "chunks")},
		{"h2", h2UpstreamConfig, map[string]string{"up": h2}},
	} {
		for _, announce := range []string{"", "Trailer: X-Checksum, X-Other\r\n"} {
			if tc.name == "h2" && announce == "" {
				// Go's HTTP/2 server keeps only the trailers the request
				// announced: what weft sends is not observable here.
				continue
			}
			t.Run(tc.name+" "+strings.TrimSpace(announce), func(t *testing.T) {
				_, url := startProxy(t, tc.cfg, tc.vars)
				c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\n"+announce)
				_, _ = chunkWriter{c}.Write([]byte("alpha"))
				_, _ = io.WriteString(c, "0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n")
				status, body := readAnswer(t, br)
				if status != 200 || !strings.Contains(body, "x-checksum=abc,x-other=1") || !strings.Contains(body, "alpha") {
					t.Fatalf("%d %q: want the body and both trailers upstream", status, body)
				}
			})
		}
	}
}

// A Wasm filter sees a streamed HTTP/1.1 request's trailers in
// on_http_request_trailers, after a last body chunk without
// end_of_stream; what it adds reaches the upstream (HTTP/1.1 and HTTP/2),
// and a local reply there answers the client instead of the upstream.
func TestH1WasmFilterSeesRequestTrailers(t *testing.T) {
	h1 := uploadUpstream(t, func(r *http.Request) (int, string) { return 200, trailerEcho(r) })
	h2 := h2cUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, trailerEcho(r)) })
	module := guestFile(t, t.TempDir(), "grpcwatch")
	filters := "filters:\n  - name: watch\n    module: {path: " + module + "}\n"
	h2cfg := filters + strings.Replace(h2UpstreamConfig, "    virtual_hosts:", "    filters: [watch]\n    virtual_hosts:", 1)
	for _, tc := range []struct {
		name, cfg string
		vars      map[string]string
	}{
		{"h1", filters + uploadConfig, uploadVars(h1, "filters", "watch")},
		{"h2", h2cfg, map[string]string{"up": h2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := startProxy(t, tc.cfg, tc.vars)
			// Announced, so that Go's HTTP/2 server keeps them all.
			c, br := upload(t, url, "POST", "Transfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Wasm-Trailer\r\n")
			_, _ = chunkWriter{c}.Write([]byte("alpha"))
			_, _ = io.WriteString(c, "0\r\nX-Checksum: abc\r\n\r\n")
			status, body := readAnswer(t, br)
			if want := "alpha x-checksum=abc,x-wasm-trailer=checksum=abc body_eos=false"; status != 200 || body != want {
				t.Fatalf("%d %q, want %q", status, body, want)
			}

			c, br = upload(t, url, "POST", "Transfer-Encoding: chunked\r\n")
			_, _ = chunkWriter{c}.Write([]byte("alpha"))
			_, _ = io.WriteString(c, "0\r\nX-Deny-Trailers: 1\r\n\r\n")
			if status, body := readAnswer(t, br); status != 403 || body != "trailers refused by wasm" {
				t.Fatalf("%d %q, want the filter's 403", status, body)
			}
		})
	}
}

// A Trailer header goes upstream with a chunked request only: a body with
// a Content-Length has no trailers on HTTP/1.1, and keeps its framing
// (whole, and streamed).
func TestTrailerHeaderOnlyOnChunkedRequests(t *testing.T) {
	up := uploadUpstream(t, func(r *http.Request) (int, string) {
		b, _ := io.ReadAll(r.Body)
		return 200, fmt.Sprintf("%d chunked=%v trailer=%q", len(b), len(r.TransferEncoding) > 0, r.Header.Get("Trailer"))
	})
	_, url := startProxy(t, uploadConfig, uploadVars(up))
	for _, n := range []int{100, 20000} {
		c, br := upload(t, url, "POST", fmt.Sprintf("Content-Length: %d\r\nTrailer: X-Sum\r\n", n))
		_, _ = io.WriteString(c, strings.Repeat("a", n))
		if st, body := readAnswer(t, br); st != 200 || body != fmt.Sprintf("%d chunked=false trailer=\"\"", n) {
			t.Fatalf("%d bytes: %d %q", n, st, body)
		}
	}
}
