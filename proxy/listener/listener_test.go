package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

func start(t *testing.T, lim config.Limits) *Listener {
	t.Helper()
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Limits: lim, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("ok")
	}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return l
}

func send(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = c.Write([]byte(raw))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLimitsAndGuard(t *testing.T) {
	l := start(t, config.Limits{MaxHeaderBytes: 2048, MaxBodyBytes: 16})
	addr := l.Addr().String()
	cases := []struct {
		name, raw string
		want      int
	}{
		{"fine", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200},
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 4000) + "\r\n\r\n", 431},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"te case-insensitive", "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\nTRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bad line", "NOT A REQUEST\r\n\r\n", 400},
	}
	for _, c := range cases {
		if got := send(t, addr, c.raw); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
}

// Shutdown before Serve must not leave a Serve that accepts forever.
func TestShutdownBeforeServe(t *testing.T) {
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Handler: func(*fasthttp.RequestCtx) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.Shutdown(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Serve() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve after Shutdown did not return")
	}
}

// TestStrictHead is the listener's strict HTTP/1.1 table: each request is
// answered at once with the status nginx and Envoy give it, and counted
// (but for the bare LF in a trailer, below). The handler reads the whole body stream, as the proxy does, and answers
// 400 when that read fails: a chunked body streams (StreamRequestBody), so
// what the framer finds in its trailer surfaces there, in the handler, as
// the body's read error, not in the listener's error handler (the proxy's
// handler counts it: TestBareLFInStreamedTrailersIsCounted).
func TestStrictHead(t *testing.T) {
	rej := &Rejects{}
	var mu sync.Mutex
	var bodyErr error // the last body read error the handler saw
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Limits: config.Limits{MaxHeadersCount: 5}, Rejects: rej,
		Handler: func(ctx *fasthttp.RequestCtx) {
			var err error
			if body := ctx.RequestBodyStream(); body != nil { // nil: no body, or one read whole
				_, err = io.Copy(io.Discard, body)
			}
			mu.Lock()
			bodyErr = err
			mu.Unlock()
			if err != nil {
				ctx.Error("request body: "+err.Error(), fasthttp.StatusBadRequest)
				ctx.SetConnectionClose()
				return
			}
			ctx.SetBodyString("ok")
		}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	addr := l.Addr().String()
	const inBody Reason = -1
	hdrs := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-%d: v\r\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name, raw string
		want      int
		why       Reason // counted when want is not 200 (inBody: the handler's body read fails, nothing counted)
	}{
		{"fine", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, 0},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", 200, 0},
		{"token punctuation", "GET / HTTP/1.1\r\nHost: a\r\nX-!#$%&'*+-.^_`|~: v\r\n\r\n", 200, 0},
		{"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Bad: v\r\n\r\n", 400, RejectHeaderName},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-Bad : v\r\n\r\n", 400, RejectParse},
		{"max headers", "GET / HTTP/1.1\r\nHost: a\r\n" + hdrs(4) + "\r\n", 200, 0},
		{"one header over", "GET / HTTP/1.1\r\nHost: a\r\n" + hdrs(5) + "\r\n", 431, RejectHeaderCount},
		{"HTTP/1.7", "GET / HTTP/1.7\r\nHost: a\r\n\r\n", 505, RejectVersion},
		{"HTTP/2.0 on HTTP/1", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, RejectVersion},
		{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, RejectVersion},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400, RejectObsFold},
		{"bare LF line, CRLF end", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400, RejectBareLF},
		{"bare LF only", "GET / HTTP/1.1\nHost: a\n\n", 400, RejectBareLF},
		{"bare LF end", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400, RejectBareLF},
		{"bare LF before the request line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, RejectBareLF},
		{"blank line before the request line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200, 0},
		{"bare LFs in a body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\na\n\nb\n\n", 200, 0},
		{"bare LFs in chunks", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n\n\n\n\n\r\n0\r\n\r\n", 200, 0},
		// A chunked body streams: the framer still stops the connection
		// before the trailer's bare LF, but the handler is reading the
		// body then, so the read fails with errBareLF and the handler
		// answers 400. The listener's error handler never sees it, so no
		// refusal is counted (the proxy answers it as a broken body: 400,
		// the upstream request cut).
		{"bare LF in a trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\n\r\n", 400, inBody},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, RejectFraming},
		{"userinfo", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, RejectTarget},
		{"@ in the path", "GET http://a/u@p HTTP/1.1\r\nHost: a\r\n\r\n", 200, 0},
	}
	total := func() (n int64) {
		for _, r := range Reasons() {
			n += rej.Count(r)
		}
		return n
	}
	for _, c := range cases {
		var before int64
		if c.why != inBody {
			before = rej.Count(c.why)
		}
		all := total()
		if got := send(t, addr, c.raw); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
			continue
		}
		mu.Lock()
		gotErr := bodyErr
		bodyErr = nil
		mu.Unlock()
		if c.why == inBody {
			if !errors.Is(gotErr, errBareLF) {
				t.Errorf("%s: the handler's body read failed with %v, want %v", c.name, gotErr, errBareLF)
			}
			if n := total(); n != all {
				t.Errorf("%s: %d refusals counted, want none (the handler answered)", c.name, n-all)
			}
			continue
		}
		if gotErr != nil {
			t.Errorf("%s: the handler's body read failed: %v", c.name, gotErr)
		}
		if c.want != 200 && rej.Count(c.why) != before+1 {
			t.Errorf("%s: %s counted %d times, want once more than %d", c.name, c.why, rej.Count(c.why), before)
		}
	}
}

// max_headers_count holds HTTP/2 requests too.
func TestHTTP2HeaderCount(t *testing.T) {
	rej := &Rejects{}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Limits: config.Limits{MaxHeadersCount: 8}, Rejects: rej,
		Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, H2: &H2Options{Handler: ok}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true) // prior knowledge
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	// n headers, plus the User-Agent and Accept-Encoding the client adds
	// and :authority: 8 is the limit.
	for _, c := range []struct{ n, want int }{{5, 200}, {6, 431}} {
		req, _ := http.NewRequest("GET", "http://"+l.Addr().String()+"/", nil)
		for i := range c.n {
			req.Header.Set(fmt.Sprintf("X-%d", i), "v")
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want || resp.ProtoMajor != 2 {
			t.Errorf("%d headers: %s %d, want HTTP/2 %d", c.n, resp.Proto, resp.StatusCode, c.want)
		}
	}
	if rej.Count(RejectHeaderCount) != 1 {
		t.Errorf("header_count counted %d, want 1", rej.Count(RejectHeaderCount))
	}
}
