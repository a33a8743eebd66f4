package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// per_try_timeout starts where Envoy's does (cluster/pertry.go): once the
// try has a usable connection and has sent its request whole. A slow
// connect is bounded by connect_timeout and the route timeout, a slow
// upload by the listener's and cluster's idle bounds; an upstream slow to
// answer is still cut and retried. Each is checked over every upstream
// transport: an HTTP/1.1 or HTTP/2 client, to an http1 or http2 cluster
// (fasthttp's pool, weft's HTTP/2 client, net/http's transport).

const perTryConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /http1/}
            route:
              cluster: http1
              timeout: 20s
              retry: {{retry}}
          - match: {prefix: /http2/}
            route:
              cluster: http2
              timeout: 20s
              retry: {{retry}}
clusters:
  - name: http1
    connect_timeout: 5s
    endpoints: {{endpoints}}
  - name: http2
    protocol: http2
    connect_timeout: 5s
    endpoints: {{endpoints}}
`

// perTryCase is a client protocol and a cluster protocol.
type perTryCase struct {
	h2down  bool
	cluster string // "http1" or "http2": the route's path prefix
}

var perTryCases = []perTryCase{{false, "http1"}, {false, "http2"}, {true, "http1"}, {true, "http2"}}

func (c perTryCase) String() string {
	down := "h1"
	if c.h2down {
		down = "h2"
	}
	return down + "-to-" + c.cluster
}

// startPerTryProxy starts a proxy whose two clusters (http1, http2) have
// the endpoints addrs, under retry policy retry.
func startPerTryProxy(t *testing.T, retry string, addrs ...string) string {
	t.Helper()
	eps := make([]string, len(addrs))
	for i, a := range addrs {
		eps[i] = fmt.Sprintf("{address: %q}", a)
	}
	_, url := startProxy(t, perTryConfig, map[string]string{
		"retry": retry, "endpoints": "[" + strings.Join(eps, ", ") + "]"})
	return url
}

// serveBoth serves h on ln with HTTP/1.1 and h2c (prior knowledge), until
// the test ends.
func serveBoth(t *testing.T, ln net.Listener, h http.HandlerFunc) {
	t.Helper()
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	testserver.ServeHTTP(t, &http.Server{Protocols: &p, Handler: h}, ln)
}

// upstreamBoth serves h on a new loopback listener (see serveBoth).
func upstreamBoth(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveBoth(t, ln, h)
	return ln.Addr().String()
}

// perTryGet sends GET url over the case's client protocol and returns the
// status and body (status 0 and the error when it failed).
func perTryGet(t *testing.T, c perTryCase, url string) (int, string) {
	t.Helper()
	if !c.h2down {
		st, body, _ := get(t, &fasthttp.Client{}, url)
		return st, body
	}
	cl := h2cClient()
	defer cl.CloseIdleConnections()
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	return statusBody(resp)
}

// (a) A connect that takes longer than per_try_timeout (a second: the
// SYN retransmission) but finishes within connect_timeout is not cut: the
// try then has its connection, and the upstream's prompt answer comes
// through. Before, the per-try bound included the connect: the try failed
// (503 connect failure over HTTP/1.1, 504 on the other transports) once
// per_try_timeout had passed.
func TestPerTryTimeoutStartsAfterConnect(t *testing.T) {
	// Short of the connect's second, long enough for a loopback answer on
	// a loaded machine.
	const perTry = 500 * time.Millisecond
	for _, c := range perTryCases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			slow := testserver.StartSlowConnect(t)
			// Neither a connect failure nor a timeout is retried: the
			// first try is the one that must succeed.
			url := startPerTryProxy(t, fmt.Sprintf("{on: [reset], per_try_timeout: %s}", perTry), slow.Addr)
			type result struct {
				status int
				body   string
			}
			done := make(chan result, 1)
			go func() {
				st, body := perTryGet(t, c, url+"/"+c.cluster+"/x")
				done <- result{st, body}
			}()
			// The proxy's connect is under way (its SYN dropped), or the
			// try already ended.
			var r result
			connecting := false
			deadline := time.Now().Add(10 * time.Second)
			for !connecting {
				select {
				case r = <-done:
					t.Fatalf("the try ended before its connect could complete: %d %q", r.status, r.body)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatal("no connect to the upstream under way after 10s")
				}
				connecting = slow.Connecting()
				if !connecting {
					time.Sleep(5 * time.Millisecond)
				}
			}
			ln := slow.Open(t)
			serveBoth(t, ln, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "connected late") })
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("no answer in 30s")
			}
			if r.status != 200 || r.body != "connected late" {
				t.Fatalf("a connect slower than per_try_timeout (%s), within connect_timeout (5s): %d %q, want 200 %q",
					perTry, r.status, r.body, "connected late")
			}
		})
	}
}

// (b) On a connection the try has, an upstream that does not answer
// within per_try_timeout is cut, and the request is retried on the other
// endpoint, as before.
func TestPerTryTimeoutCutsSlowAnswer(t *testing.T) {
	// Long enough for the fast endpoint's answer on a loaded machine.
	const perTry = time.Second
	for _, c := range perTryCases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			// The silent endpoint's handler ends when the proxy cuts its
			// try (the request's context), at the latest as the test ends.
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			var mu sync.Mutex
			hits := map[string]int{}
			handler := func(name string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					hits[name]++
					mu.Unlock()
					if name == "silent" {
						select {
						case <-release:
						case <-r.Context().Done():
						}
						return
					}
					_, _ = io.WriteString(w, name)
				}
			}
			silent := upstreamBoth(t, handler("silent"))
			fast := upstreamBoth(t, handler("fast"))
			url := startPerTryProxy(t, fmt.Sprintf("{attempts: 2, on: [5xx], per_try_timeout: %s, backoff_base: 1ms}", perTry), silent, fast)
			for i := 0; ; i++ {
				st, body := perTryGet(t, c, url+"/"+c.cluster+"/x")
				if st != 200 || body != "fast" {
					t.Fatalf("request %d: %d %q, want the fast endpoint's answer after the silent one's per-try timeout", i, st, body)
				}
				mu.Lock()
				n := hits["silent"]
				mu.Unlock()
				if n > 0 {
					break // a try met the silent endpoint, and was cut and retried
				}
				if i == 20 {
					t.Fatal("20 requests and none tried the silent endpoint")
				}
			}
		})
	}
}

// (c) A request body that the client takes longer than per_try_timeout to
// send is not cut: the per-try bound starts once the body has gone, and
// the upstream answers at once then. Before, it was cut (504) on every
// transport but fasthttp's pool, whose deadline already waited for a
// streamed body.
func TestPerTryTimeoutStartsAfterUpload(t *testing.T) {
	const size = 200 << 10 // streamed, past what a listener reads with the head
	// Long enough for the upstream's answer after the body on a loaded
	// machine; the upload pauses three times that.
	const perTry = 500 * time.Millisecond
	for _, c := range perTryCases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			firstPart := make(chan struct{})
			var once sync.Once
			up := upstreamBoth(t, func(w http.ResponseWriter, r *http.Request) {
				var buf [4096]byte
				n, err := io.ReadFull(r.Body, buf[:1])
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				once.Do(func() { close(firstPart) })
				rest, err := io.Copy(io.Discard, r.Body)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				_, _ = fmt.Fprintf(w, "got %d", int64(n)+rest)
			})
			// Timeouts are not retried: a cut try would be the answer.
			url := startPerTryProxy(t, fmt.Sprintf("{on: [reset], per_try_timeout: %s}", perTry), up)
			half := strings.Repeat("x", size/2)
			// The second half goes once the upstream has read from the
			// first, and three per-try timeouts later: the upload then
			// takes longer than per_try_timeout, on a connection the try
			// has had all along.
			pause := func() {
				select {
				case <-firstPart:
				case <-time.After(10 * time.Second):
					t.Error("the upstream got no body byte in 10s")
				}
				time.Sleep(3 * perTry)
			}
			st, body := perTryPost(t, c, url+"/"+c.cluster+"/upload", half, pause)
			if want := fmt.Sprintf("got %d", size); st != 200 || body != want {
				t.Fatalf("an upload slower than per_try_timeout (%s): %d %q, want 200 %q", perTry, st, body, want)
			}
		})
	}
}

// perTryPost POSTs twice half to url over the case's client protocol: the
// first half, then pause(), then the second; it returns the status and
// body of the answer (0 and the error when it failed).
func perTryPost(t *testing.T, c perTryCase, url, half string, pause func()) (int, string) {
	t.Helper()
	if c.h2down {
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.WriteString(pw, half)
			pause()
			_, _ = io.WriteString(pw, half)
			_ = pw.Close()
		}()
		req, err := http.NewRequest("POST", url, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(2 * len(half))
		cl := h2cClient()
		defer cl.CloseIdleConnections()
		resp, err := cl.Do(req)
		if err != nil {
			_ = pr.CloseWithError(err)
			return 0, err.Error()
		}
		return statusBody(resp)
	}
	// HTTP/1.1 by hand: fasthttp's client sends a body in one go.
	addr := strings.TrimPrefix(url, "http://")
	path := addr[strings.IndexByte(addr, '/'):]
	addr = addr[:strings.IndexByte(addr, '/')]
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST " + path + " HTTP/1.1\r\nHost: svc.test\r\nContent-Length: " + strconv.Itoa(2*len(half)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+half); err != nil {
		return 0, err.Error()
	}
	pause()
	if _, err := io.WriteString(conn, half); err != nil {
		return 0, err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err.Error()
	}
	return statusBody(resp)
}

// A connect the route's timeout ends (the endpoint silent, connect_timeout
// far off) answers the route's timeout, 504, on every transport, as in
// Envoy; the endpoint still has its connect failure (cluster's
// TestDialEndsWithItsRequest). Before, an HTTP/1.1 client to an HTTP/1.1
// cluster got 503, a connect failure.
func TestRouteTimeoutEndsConnect(t *testing.T) {
	for _, c := range perTryCases {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			silent := testserver.StartSlowConnect(t) // never opened
			cfg := strings.ReplaceAll(perTryConfig, "timeout: 20s", "timeout: 300ms")
			_, url := startProxy(t, cfg, map[string]string{
				"retry": "{on: [connect-failure]}", "endpoints": fmt.Sprintf("[{address: %q}]", silent.Addr)})
			if st, body := perTryGet(t, c, url+"/"+c.cluster+"/x"); st != 504 {
				t.Fatalf("a connect the route's 300ms timeout ended (connect_timeout 5s): %d %q, want 504", st, body)
			}
		})
	}
}

// statusBody reads resp's body whole and closes it: the status and body,
// or 0 and the error when the body broke.
func statusBody(resp *http.Response) (int, string) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}
