package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
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

// A chunked HTTP/1.1 response's trailers reach the client, and a Wasm
// filter sees them in on_http_response_trailers (what it adds there goes
// too): when the whole body came with the headers, and when it streamed in
// parts. Without a filter they pass through as the upstream sent them.
func TestH1WasmFilterSeesResponseTrailers(t *testing.T) {
	const trailers = "0\r\nGrpc-Status: 7\r\nX-Sum: abc\r\n\r\n"
	whole := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status, X-Sum\r\n\r\n5\r\nfirst\r\n6\r\nsecond\r\n"+trailers)
	})
	next := make(chan struct{}, 1)
	split := bodyUpstream(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
		select {
		case <-next: // the client has the first part: the body streams
		case <-time.After(20 * time.Second):
			return
		}
		_, _ = io.WriteString(c, "6\r\nsecond\r\n"+trailers)
	})
	module := guestFile(t, t.TempDir(), "grpcwatch")
	cfg := `
filters:
  - name: watch
    module: {path: {{module}}}
listeners:
  - name: main
    address: 127.0.0.1:0
    {{filters}}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /split}
            route: {cluster: split}
          - match: {prefix: /}
            route: {cluster: whole}
clusters:
  - name: whole
    endpoints: [{address: "{{whole}}"}]
  - name: split
    endpoints: [{address: "{{split}}"}]
`
	for _, filtered := range []bool{true, false} {
		vars := map[string]string{"module": module, "whole": whole, "split": split, "filters": ""}
		if filtered {
			vars["filters"] = "filters: [watch]"
		}
		_, url := startProxy(t, cfg, vars)
		for _, path := range []string{"/whole", "/split"} {
			t.Run(fmt.Sprintf("%s filtered=%v", path, filtered), func(t *testing.T) {
				resp, _ := streamGet(t, url, path)
				first := make([]byte, 5)
				if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
					t.Fatalf("%q %v", first, err)
				}
				if path == "/split" {
					next <- struct{}{}
				}
				rest, err := io.ReadAll(resp.Body)
				if err != nil || string(rest) != "second" {
					t.Fatalf("%q %v", rest, err)
				}
				if g, s := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("X-Sum"); g != "7" || s != "abc" {
					t.Fatalf("upstream trailers %v, want grpc-status 7 and x-sum abc", resp.Trailer)
				}
				seen := resp.Trailer.Get("X-Wasm-Seen")
				switch {
				case !filtered && seen != "":
					t.Fatalf("x-wasm-seen %q without a filter", seen)
				case filtered && (!strings.HasPrefix(seen, "req_chunks=0 req_bytes=0 req_eos=false header_eos=true resp_chunks=") ||
					!strings.HasSuffix(seen, " grpc_status=7")):
					t.Fatalf("x-wasm-seen %q: the filter's response trailers callback did not see grpc-status 7 (trailers %v)", seen, resp.Trailer)
				}
			})
		}
	}
}
