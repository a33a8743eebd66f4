package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/testserver"
	"github.com/weftmesh/weft/proxy/listener"
)

const plainConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    limits: {max_header_bytes: 4096, max_body_bytes: 1024}
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

// rawRequest writes text to the proxy and reads one response.
func rawRequest(t *testing.T, addr, text string) (int, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(text)); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// fwd is what the upstream receives for a request the proxy passes on:
// the request line, the headers the client sent, then the proxy's own.
func fwd(line, headers, body string) string {
	return line + "\r\n" + headers + "X-Request-Id: r1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n" + body
}

// TestSmugglingCorpus sends request-smuggling and parsing cases to the
// proxy over raw TCP and asserts the statuses the client reads and the
// exact bytes of the complete requests the upstream receives (nil: none).
// The upstream frames what it gets with net/http, a parser independent of
// fasthttp, so an ambiguity between the proxy and the upstream shows as
// extra or different requests. Chunked bodies stream: the upstream gets
// them chunked, re-framed by the proxy (extensions dropped), and a body
// found invalid mid-stream leaves the upstream an incomplete request, cut
// when the proxy closes the connection; only rows marked truncatedOK may
// do that, and no row may give the upstream a complete request it does
// not list.
func TestSmugglingCorpus(t *testing.T) {
	up := testserver.StartRaw(t)
	p, url := startProxy(t, strings.Replace(plainConfig, "max_body_bytes: 1024}", "max_body_bytes: 1024, max_headers_count: 20}", 1),
		map[string]string{"up": up.Addr})
	addr := strings.TrimPrefix(url, "http://")
	const h = "Host: a\r\nX-Request-Id: r1\r\n"
	get := fwd("GET / HTTP/1.1", "Host: a\r\n", "")
	many := func(n int) string { return strings.Repeat("X-Many: v\r\n", n) }
	cases := []struct {
		name   string
		req    string
		status []int    // the responses the client reads, in order
		want   []string // the complete requests the upstream receives, exactly
		// truncatedOK: the request is refused in its streamed body, after
		// its head (and any valid chunks) went upstream; the upstream may
		// then hold an incomplete request, cut when the proxy closed the
		// connection, and never a complete one.
		truncatedOK bool
	}{
		{"plain GET", "GET / HTTP/1.1\r\n" + h + "\r\n", []int{200}, []string{get}, false},

		// Content-Length and Transfer-Encoding.
		{"CL then TE", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE then CL", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"CL and TE, odd case", "POST / HTTP/1.1\r\n" + h + "content-length: 3\r\nTRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"CL and TE identity", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello", []int{400}, nil, false},
		{"two Content-Lengths", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", []int{400}, nil, false},
		{"two equal Content-Lengths", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", []int{400}, nil, false},
		{"Content-Length list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\n\r\nhello", []int{400}, nil, false},
		{"Content-Length sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\nhello", []int{400}, nil, false},
		{"Content-Length not a number", "POST / HTTP/1.1\r\n" + h + "Content-Length: abc\r\n\r\n", []int{400}, nil, false},
		{"body over the limit", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5000\r\n\r\n" + strings.Repeat("b", 5000), []int{413}, nil, false},

		// Transfer-Encoding variants.
		{"two TE fields", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE list", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE unknown coding", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE space before colon", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE vertical tab", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: \vchunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE obs-folded", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", []int{400}, nil, false},
		{"TE chunked, any case", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n", []int{200},
			[]string{"POST /p HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n5\r\nhello\r\n0\r\n\r\n"}, false},

		// Chunk sizes.
		{"chunk extension", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n", []int{200},
			[]string{"POST /p HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n5\r\nhello\r\n0\r\n\r\n"}, false},
		{"chunk size not hex", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", []int{400}, nil, true},
		{"chunk size negative", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n", []int{400}, nil, true},
		{"chunk size 0x", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", []int{400}, nil, true},
		{"chunk size overflows", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", []int{400}, nil, true},
		{"chunk shorter than its size", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", []int{400}, nil, true},
		{"bare LF in a trailer", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\n\r\n", []int{400}, nil, true},
		{"chunk size bare LF", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", []int{400}, nil, true},
		{"forbidden trailer", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n", []int{400}, nil, true},

		// Header names, values, folding.
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: one\r\n two\r\n\r\n", []int{400}, nil, false},
		{"space in a name", "GET / HTTP/1.1\r\n" + h + "X Bad: v\r\n\r\n", []int{400}, nil, false},
		{"name not a token", "GET / HTTP/1.1\r\n" + h + "X(Bad): v\r\n\r\n", []int{400}, nil, false},
		{"empty name", "GET / HTTP/1.1\r\n" + h + ": v\r\n\r\n", []int{400}, nil, false},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x00b\r\n\r\n", []int{400}, nil, false},
		{"CR in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n", []int{400}, nil, false},
		{"NUL in the target", "GET /a\x00b HTTP/1.1\r\n" + h + "\r\n", []int{400}, nil, false},
		{"space in the target", "GET /a b HTTP/1.1\r\n" + h + "\r\n", []int{400}, nil, false},
		{"two Hosts", "GET / HTTP/1.1\r\n" + h + "Host: b\r\n\r\n", []int{400}, nil, false},
		{"no Host", "GET / HTTP/1.1\r\nX-Request-Id: r1\r\n\r\n", []int{400}, nil, false},
		{"headers at the limit", "GET / HTTP/1.1\r\n" + h + many(18) + "\r\n", []int{200},
			[]string{"GET / HTTP/1.1\r\n" + h + many(18) + "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"}, false},
		{"one header over the limit", "GET / HTTP/1.1\r\n" + h + many(19) + "\r\n", []int{431}, nil, false},
		{"header block over max_header_bytes", "GET / HTTP/1.1\r\n" + h + "X-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", []int{431}, nil, false},
		{"values trimmed", "GET / HTTP/1.1\r\nHost:  a \t\r\nX-Request-Id: r1\r\n\r\n", []int{200}, []string{get}, false},
		{"Connection names a header", "GET / HTTP/1.1\r\n" + h + "Connection: x-secret\r\nX-Secret: s\r\n\r\n", []int{200}, []string{get}, false},

		// Request line and version.
		{"garbage", "GARBAGE\r\n\r\n", []int{400}, nil, false},
		{"version not HTTP/x.y", "GET / HTTP/9.9x\r\n" + h + "\r\n", []int{400}, nil, false},
		{"HTTP/1.7", "GET / HTTP/1.7\r\n" + h + "\r\n", []int{505}, nil, false},
		{"HTTP/2.0 over HTTP/1", "GET / HTTP/2.0\r\n" + h + "\r\n", []int{505}, nil, false},
		{"HTTP/1.0 kept", "GET / HTTP/1.0\r\n" + h + "\r\n", []int{200}, []string{fwd("GET / HTTP/1.0", "Host: a\r\n", "")}, false},
		{"lower-case version", "GET / http/1.1\r\n" + h + "\r\n", []int{400}, nil, false},
		{"absolute-form, Host differs", "GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: r1\r\n\r\n", []int{200},
			[]string{fwd("GET /x HTTP/1.1", "Host: b.example\r\n", "")}, false},
		{"absolute-form with userinfo", "GET http://evil@b.example/x HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: r1\r\n\r\n", []int{400}, nil, false},
		{"absolute-form with empty userinfo", "GET http://@b.example/x HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: r1\r\n\r\n", []int{400}, nil, false},
		{"@ in an absolute-form path", "GET http://b.example/x@y HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: r1\r\n\r\n", []int{200},
			[]string{fwd("GET /x@y HTTP/1.1", "Host: b.example\r\n", "")}, false},

		// Pipelining: each request goes on as itself, in order.
		{"pipelined GETs", "GET /1 HTTP/1.1\r\n" + h + "\r\nGET /2 HTTP/1.1\r\n" + h + "\r\n", []int{200, 200},
			[]string{fwd("GET /1 HTTP/1.1", "Host: a\r\n", ""), fwd("GET /2 HTTP/1.1", "Host: a\r\n", "")}, false},
		{"request inside a body stays a body", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 36\r\n\r\nGET /admin HTTP/1.1\r\nHost: admin\r\n\r\n", []int{200},
			[]string{"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\nX-Request-Id: r1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\nGET /admin HTTP/1.1\r\nHost: admin\r\n\r\n"}, false},
		{"bare LF request, answered at once", "GET / HTTP/1.1\nHost: a\nX-Request-Id: r1\n\n", []int{400}, nil, false},
		{"bare LF ending the head", "GET / HTTP/1.1\r\n" + h + "\n", []int{400}, nil, false},
		{"pipelined, the second with bare LFs", "GET /1 HTTP/1.1\r\n" + h + "\r\nGET /2 HTTP/1.1\nHost: a\n\n", []int{200, 400},
			[]string{fwd("GET /1 HTTP/1.1", "Host: a\r\n", "")}, false},
		{"bare LFs in a body, then another request", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 6\r\n\r\na\n\nb\n\nGET /2 HTTP/1.1\r\n" + h + "\r\n", []int{200, 200},
			[]string{"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nX-Request-Id: r1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\na\n\nb\n\n",
				fwd("GET /2 HTTP/1.1", "Host: a\r\n", "")}, false},
		{"bare LFs in chunks, then another request", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\n\n\n\n\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n" + h + "\r\n", []int{200, 200},
			[]string{"POST /p HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n3\r\n\n\n\n\r\n0\r\n\r\n",
				fwd("GET /2 HTTP/1.1", "Host: a\r\n", "")}, false},
		{"Content-Type kept as sent", "POST /p HTTP/1.1\r\n" + h + "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", []int{200},
			[]string{"POST /p HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-Request-Id: r1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\nhi"}, false},
		{"pipelined after CL+TE is dropped", "POST / HTTP/1.1\r\n" + h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + h + "\r\n", []int{400}, nil, false},
		{"pipelined after a bad request is dropped", "GET / HTTP/1.1\r\n" + h + "X Bad: v\r\n\r\nGET /smuggled HTTP/1.1\r\n" + h + "\r\n", []int{400}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up.Reset()
			got := exchangeRaw(t, addr, c.req, len(c.status))
			// Every upstream connection this row made is closed and its
			// requests recorded before they are read, and before the next
			// row resets them: rows cannot see each other's traffic.
			if !up.Settle(10 * time.Second) {
				t.Fatalf("the upstream still has %d connections open", up.Open())
			}
			if len(got) != len(c.status) {
				t.Fatalf("read %d responses %v, want statuses %v", len(got), got, c.status)
			}
			if !slices.Equal(got, c.status) {
				t.Errorf("statuses %v, want %v", got, c.status)
			}
			var complete, cut []string
			for _, r := range up.Received() {
				if r.Complete {
					complete = append(complete, r.Wire)
				} else {
					cut = append(cut, r.Wire)
				}
			}
			if !slices.Equal(complete, c.want) {
				t.Errorf("the upstream received the complete requests\n%q\nwant\n%q", complete, c.want)
			}
			if len(cut) > 0 && !c.truncatedOK {
				t.Errorf("the upstream received incomplete requests %q", cut)
			}
		})
	}
	// Everything refused was counted; the proxy still works.
	if n := p.rejects.Count(listener.RejectFraming); n < 4 {
		t.Errorf("framing refusals counted %d, want at least 4", n)
	}
	if st, err := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil || st != 200 {
		t.Fatalf("after bad input: %d %v", st, err)
	}
}

// exchangeRaw writes text on a new connection and reads up to n responses
// (fewer when the proxy closes the connection), returning their statuses.
func exchangeRaw(t *testing.T, addr, text string, n int) []int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var out []int
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
	return out
}

// An absolute-form target names the host (RFC 9112 §3.2.2): routing and
// the upstream must both use it, whatever the Host header says.
func TestAbsoluteFormTargetDecidesTheHost(t *testing.T) {
	up := testserver.Start(t, "up")
	_, url := startProxy(t, `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: admin
        domains: [admin.example]
        routes:
          - match: {prefix: /}
            direct_response: {status: 403, body: "admin is closed"}
      - name: public
        domains: [public.example]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`, map[string]string{"up": up.Addr})
	st, err := rawRequest(t, strings.TrimPrefix(url, "http://"), "GET http://admin.example/secret HTTP/1.1\r\nHost: public.example\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if st != 403 || up.Hits.Load() != 0 {
		t.Fatalf("absolute-form admin.example with Host public.example: %d, upstream hits %d", st, up.Hits.Load())
	}
}

// TestFilterCannotMakeAMalformedUpstreamRequest: a Wasm filter (a Go SDK
// guest) that writes a header value with CR LF, or a :path with a space,
// is refused; under fail_open the upstream receives the request as the
// client sent it, under fail_closed nothing, and each write is counted.
func TestFilterCannotMakeAMalformedUpstreamRequest(t *testing.T) {
	up := testserver.StartRaw(t)
	dir := t.TempDir()
	p, url := startProxy(t, `
filters:
  - name: inject
    module: {path: "{{setheader}}"}
    config: "x-a=v\r\nx-injected: 1"
    failure_policy: fail_closed
  - name: badpath
    module: {path: "{{setheader}}"}
    isolate_vm: true # inject's guest panics: its VM is rebuilt, and this plugin must not wait for that
    config: ":path=/a b HTTP/1.1"
    failure_policy: fail_open
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /closed}
            route: {cluster: up}
            filters: [inject]
          - match: {prefix: /open}
            route: {cluster: up}
            filters: [badpath]
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`, map[string]string{"up": up.Addr, "setheader": guestFile(t, dir, "setheader")})
	addr := strings.TrimPrefix(url, "http://")
	if st := exchangeRaw(t, addr, "GET /closed HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n", 1); !slices.Equal(st, []int{503}) {
		t.Fatalf("fail_closed: statuses %v, want [503]", st)
	}
	if reqs := up.Requests(); len(reqs) != 0 {
		t.Fatalf("fail_closed: the upstream received %q", reqs)
	}
	if st := exchangeRaw(t, addr, "GET /open HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n", 1); !slices.Equal(st, []int{200}) {
		t.Fatalf("fail_open: statuses %v, want [200]", st)
	}
	if reqs, want := up.Requests(), []string{fwd("GET /open HTTP/1.1", "Host: a\r\n", "")}; !slices.Equal(reqs, want) {
		t.Fatalf("fail_open: the upstream received\n%q\nwant\n%q", reqs, want)
	}
	for _, plugin := range []string{"inject", "badpath"} {
		if v, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", plugin, "event", "invalid_header"); v != 1 {
			t.Errorf("%s: invalid_header = %v, want 1", plugin, v)
		}
	}
}

// A bare LF in the trailers of a streamed chunked body is the same
// refusal as one in a head: a 400, and counted under bare_lf.
func TestBareLFInStreamedTrailersIsCounted(t *testing.T) {
	up := testserver.StartRaw(t)
	p, url := startProxy(t, plainConfig, map[string]string{"up": up.Addr})
	addr := strings.TrimPrefix(url, "http://")
	before, _ := metricValue(t, p, "weft_downstream_rejected_total", "reason", "bare_lf")
	st := exchangeRaw(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\n\r\n", 1)
	if !slices.Equal(st, []int{400}) {
		t.Fatalf("statuses %v, want [400]", st)
	}
	if n, _ := metricValue(t, p, "weft_downstream_rejected_total", "reason", "bare_lf"); n != before+1 {
		t.Fatalf("bare_lf refusals %v, want %v", n, before+1)
	}
}
