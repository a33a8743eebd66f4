package proxy

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const splitConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: ab-header
            match: {prefix: /svc, headers: [{name: x-group, exact: beta}]}
            route: {cluster: v2}
          - name: ab-cookie
            match: {prefix: /svc, cookies: [{name: group, exact: beta}]}
            route: {cluster: v2}
          - name: split
            match: {prefix: /svc}
            route:
              weighted_clusters: [{cluster: v1, weight: 80}, {cluster: v2, weight: 20}]
          - name: mirrored
            match: {prefix: /mirror}
            route:
              cluster: v1
              mirror: {cluster: shadow, percent: 100}
          - name: rewrite
            match: {prefix: /old/}
            route: {cluster: v1, prefix_rewrite: /new/, host_rewrite: backend.internal}
            request_headers:
              set: [{name: x-added, value: yes}]
              remove: [x-secret]
            response_headers:
              add: [{name: x-route, value: rewrite}]
          - name: moved
            match: {path: /moved}
            redirect: {path: /elsewhere, status_code: 302}
          - name: teapot
            match: {path: /teapot, methods: [GET]}
            direct_response: {status: 418, body: "short and stout"}
            response_headers:
              set: [{name: x-route, value: teapot}]
clusters:
  - name: v1
    endpoints: [{address: "{{v1}}"}]
  - name: v2
    endpoints: [{address: "{{v2}}"}]
  - name: shadow
    endpoints: [{address: "{{shadow}}"}]
`

func TestWeightedSplit(t *testing.T) {
	v1, v2, sh := testserver.Start(t, "v1"), testserver.Start(t, "v2"), testserver.Start(t, "shadow")
	_, url := startProxy(t, splitConfig, map[string]string{"v1": v1.Addr, "v2": v2.Addr, "shadow": sh.Addr})
	c := &fasthttp.Client{}
	const n = 2000
	for i := 0; i < n; i++ {
		if st, body, _ := get(t, c, url+"/svc"); st != 200 {
			t.Fatalf("request %d: %d %s", i, st, body)
		}
	}
	// 80/20 over 2000 draws: sd = sqrt(n p q) ≈ 17.9; allow 5 sd.
	got := float64(v2.Hits.Load())
	if want := 0.2 * n; math.Abs(got-want) > 5*math.Sqrt(n*0.2*0.8) {
		t.Fatalf("v2 got %v of %d, want about %v", got, n, want)
	}
	if v1.Hits.Load()+v2.Hits.Load() != n {
		t.Fatalf("hits %d+%d != %d", v1.Hits.Load(), v2.Hits.Load(), n)
	}
}

func TestABByHeaderAndCookie(t *testing.T) {
	v1, v2, sh := testserver.Start(t, "v1"), testserver.Start(t, "v2"), testserver.Start(t, "shadow")
	_, url := startProxy(t, splitConfig, map[string]string{"v1": v1.Addr, "v2": v2.Addr, "shadow": sh.Addr})
	c := &fasthttp.Client{}
	for i := 0; i < 50; i++ {
		if _, body, _ := get(t, c, url+"/svc", "X-Group", "beta"); body != "v2" {
			t.Fatalf("header A/B went to %q", body)
		}
		if _, body, _ := get(t, c, url+"/svc", "Cookie", "a=1; group=beta"); body != "v2" {
			t.Fatalf("cookie A/B went to %q", body)
		}
	}
}

func TestMirrorGetsCopies(t *testing.T) {
	v1, v2, sh := testserver.Start(t, "v1"), testserver.Start(t, "v2"), testserver.Start(t, "shadow")
	sh.Delay.Store(int64(50 * time.Millisecond)) // a slow shadow must not slow the real request
	sh.Status.Store(500)                         // nor change its answer
	_, url := startProxy(t, splitConfig, map[string]string{"v1": v1.Addr, "v2": v2.Addr, "shadow": sh.Addr})
	c := &fasthttp.Client{}
	for i := 0; i < 20; i++ {
		if st, body, _ := get(t, c, url+"/mirror/x"); st != 200 || body != "v1" {
			t.Fatalf("mirrored request answered %d %q", st, body)
		}
	}
	eventually(t, 5*time.Second, "20 mirrored copies", func() bool { return sh.Hits.Load() == 20 })
	if h := string(sh.Last().Header.Host()); !strings.Contains(h, "-shadow:") {
		t.Fatalf("shadow saw Host %q, want a -shadow suffix", h)
	}
}

func TestRewriteHeadersRedirectDirect(t *testing.T) {
	v1, v2, sh := testserver.Start(t, "v1"), testserver.Start(t, "v2"), testserver.Start(t, "shadow")
	_, url := startProxy(t, splitConfig, map[string]string{"v1": v1.Addr, "v2": v2.Addr, "shadow": sh.Addr})
	c := &fasthttp.Client{}
	st, _, h := get(t, c, url+"/old/thing?q=1", "X-Secret", "s3cr3t", "Connection", "keep-alive, X-Hop", "X-Hop", "1")
	if st != 200 {
		t.Fatalf("status %d", st)
	}
	last := v1.Last()
	if p := string(last.RequestURI()); p != "/new/thing?q=1" {
		t.Errorf("upstream saw %q, want /new/thing?q=1", p)
	}
	if h := string(last.Header.Host()); h != "backend.internal" {
		t.Errorf("upstream saw Host %q", h)
	}
	if v := last.Header.Peek("X-Added"); string(v) != "yes" {
		t.Errorf("x-added = %q", v)
	}
	if v := last.Header.Peek("X-Secret"); v != nil {
		t.Errorf("x-secret reached upstream: %q", v)
	}
	if v := last.Header.Peek("X-Hop"); v != nil {
		t.Errorf("a header named by Connection reached upstream: %q", v)
	}
	if id := last.Header.Peek("X-Request-Id"); len(id) != 36 {
		t.Errorf("x-request-id = %q, want a generated UUID", id)
	}
	if xff := last.Header.Peek("X-Forwarded-For"); string(xff) != "127.0.0.1" {
		t.Errorf("x-forwarded-for = %q", xff)
	}
	if v := last.Header.Peek("X-Forwarded-Proto"); string(v) != "http" {
		t.Errorf("x-forwarded-proto = %q", v)
	}
	if v := h.Peek("X-Route"); string(v) != "rewrite" {
		t.Errorf("response header x-route = %q", v)
	}
	// A client's request id is kept.
	get(t, c, url+"/old/x", "X-Request-Id", "client-id-1")
	if id := v1.Last().Header.Peek("X-Request-Id"); string(id) != "client-id-1" {
		t.Errorf("client x-request-id replaced by %q", id)
	}

	st, _, h = get(t, c, url+"/moved")
	if st != 302 || !strings.HasSuffix(string(h.Peek("Location")), "/elsewhere") {
		t.Errorf("redirect: %d %q", st, h.Peek("Location"))
	}
	st, body, h := get(t, c, url+"/teapot")
	if st != 418 || body != "short and stout" {
		t.Errorf("direct response: %d %q", st, body)
	}
	if v := h.Peek("X-Route"); string(v) != "teapot" {
		t.Errorf("response_headers not applied to a direct response: x-route %q", v)
	}
	st, _, _ = get(t, c, url+"/nowhere")
	if st != 404 {
		t.Errorf("no route: %d, want 404", st)
	}
}

// A request whose body streams (chunked, or over 8 KiB) is mirrored with
// its whole body once it has been read, up to mirrorBodyLimit; a longer
// body is not mirrored (counted), and the real request is not touched.
func TestMirrorStreamedBody(t *testing.T) {
	v1, v2, sh := testserver.Start(t, "v1"), testserver.Start(t, "v2"), testserver.Start(t, "shadow")
	p, url := startProxy(t, splitConfig, map[string]string{"v1": v1.Addr, "v2": v2.Addr, "shadow": sh.Addr})
	body := func(n int) []byte { return bytes.Repeat([]byte("0123456789abcdef"), n/16) }

	// Chunked, under the limit: the shadow gets the body whole, with a
	// Content-Length.
	small := body(96 << 10)
	c, br := uploadTo(t, url, "POST", "/mirror/up", "Transfer-Encoding: chunked\r\n")
	for i := 0; i < len(small); i += 16 << 10 {
		_, _ = chunkWriter{c}.Write(small[i : i+16<<10])
	}
	_, _ = io.WriteString(c, "0\r\n\r\n")
	if st, got := readAnswer(t, br); st != 200 || got != "v1" {
		t.Fatalf("mirrored upload answered %d %q", st, got)
	}
	eventually(t, 30*time.Second, "the mirrored copy", func() bool { return sh.Hits.Load() == 1 })
	last := sh.Last()
	if !bytes.Equal(last.Body(), small) || last.Header.ContentLength() != len(small) {
		t.Fatalf("the shadow got %d bytes (Content-Length %d), want the %d sent", len(last.Body()), last.Header.ContentLength(), len(small))
	}
	if h := string(last.Header.Host()); !strings.Contains(h, "-shadow") {
		t.Fatalf("shadow saw Host %q, want a -shadow suffix", h)
	}

	// Content-Length over the limit: the real request goes, the copy not.
	big := body(mirrorBodyLimit + 64<<10)
	c, br = uploadTo(t, url, "POST", "/mirror/up", fmt.Sprintf("Content-Length: %d\r\n", len(big)))
	_, _ = c.Write(big)
	if st, got := readAnswer(t, br); st != 200 || got != "v1" {
		t.Fatalf("upload over the mirror limit answered %d %q", st, got)
	}
	if n, _ := metricValue(t, p, "weft_mirror_dropped_total", "reason", "body_too_large"); n != 1 {
		t.Fatalf("weft_mirror_dropped_total{reason=body_too_large} = %v, want 1", n)
	}
	if v1.Hits.Load() != 2 || sh.Hits.Load() != 1 {
		t.Fatalf("hits: upstream %d (want 2), shadow %d (want 1)", v1.Hits.Load(), sh.Hits.Load())
	}

	// The same over HTTP/2: the copy has the stream's body.
	mid := body(64 << 10)
	resp, err := h2cClient().Post(url+"/mirror/h2", "application/octet-stream", bytes.NewReader(mid))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != "v1" {
		t.Fatalf("mirrored HTTP/2 upload answered %d %q", resp.StatusCode, got)
	}
	eventually(t, 30*time.Second, "the mirrored HTTP/2 copy", func() bool { return sh.Hits.Load() == 2 })
	if last := sh.Last(); !bytes.Equal(last.Body(), mid) {
		t.Fatalf("the shadow got %d bytes of the HTTP/2 body, want %d", len(last.Body()), len(mid))
	}
}
