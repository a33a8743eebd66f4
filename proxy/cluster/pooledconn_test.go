package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// A pooled connection the upstream closed while it sat idle, or as the
// next request reached it (pooledconn.go), on real loopback sockets.

// staleMode is what the upstream does to its first connection after
// answering the first request on it.
type staleMode int

const (
	// idleFIN closes the idle connection (FIN) before the next request.
	idleFIN staleMode = iota
	// idleRST resets it (SO_LINGER 0) before the next request.
	idleRST
	// finOnRequest reads the next request, then closes without an answer:
	// the close lands after the pool's check, as the request goes.
	finOnRequest
	// rstOnRequest reads the next request's head (and readBody bytes of
	// its body), then resets: the rest of a large body cannot be written.
	rstOnRequest
	// finFirst answers nothing on a new connection: it reads the first
	// request and closes.
	finFirst
	// cutAnswer reads the next request and closes in the middle of the
	// answer's head: part of the answer came.
	cutAnswer
)

func (m staleMode) String() string {
	return [...]string{"idle FIN", "idle RST", "FIN on the request", "RST on the request", "FIN on a new connection", "FIN in the answer"}[m]
}

// staleUpstream is an upstream whose first connection ends by mode; its
// later connections answer every request 200 "ok" and keep alive.
type staleUpstream struct {
	addr     string
	mode     staleMode
	readBody int64
	closeNow chan struct{} // idle modes: close the idle connection now
	closed   chan net.Conn // the first connection, once closed by mode
	bodies   chan int64    // body length of each request answered
	conns    atomic.Int32
}

func startStaleUpstream(t *testing.T, mode staleMode, readBody int64) *staleUpstream {
	u := &staleUpstream{mode: mode, readBody: readBody, closeNow: make(chan struct{}, 1),
		closed: make(chan net.Conn, 1), bodies: make(chan int64, 16)}
	stop := make(chan struct{})
	u.addr = testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		first := u.conns.Add(1) == 1
		for n := 0; ; n++ {
			method, cl, err := readHead(br)
			if err != nil {
				return
			}
			if first && (n == 1 || mode == finFirst) {
				u.end(c, br, cl, stop)
				return
			}
			got, _ := io.CopyN(io.Discard, br, cl)
			u.bodies <- got
			answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			if method == "HEAD" {
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
			if first && n == 0 && (mode == idleFIN || mode == idleRST) {
				select {
				case <-u.closeNow:
				case <-stop:
					return
				}
				u.end(c, br, 0, stop)
				return
			}
		}
	})
	t.Cleanup(func() { close(stop) }) // before the server's cleanup waits for it
	return u
}

// end closes the first connection as u.mode says, having read the
// request's body (cl bytes; at most u.readBody when that is set) for a
// FIN, u.readBody bytes of it for an RST.
func (u *staleUpstream) end(c net.Conn, br *bufio.Reader, cl int64, stop chan struct{}) {
	switch u.mode {
	case finOnRequest, finFirst:
		if u.readBody > 0 {
			cl = min(cl, u.readBody)
		}
		_, _ = io.CopyN(io.Discard, br, cl)
	case rstOnRequest:
		_, _ = io.CopyN(io.Discard, br, u.readBody)
	case cutAnswer:
		_, _ = io.CopyN(io.Discard, br, cl)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
	}
	if u.mode == idleRST || u.mode == rstOnRequest {
		_ = c.(*net.TCPConn).SetLinger(0)
	}
	_ = c.Close()
	u.closed <- c
}

// readHead reads a request's head: its method and Content-Length.
func readHead(br *bufio.Reader) (method string, cl int64, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", 0, err
	}
	method, _, _ = strings.Cut(line, " ")
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", 0, err
		}
		if l == "\r\n" {
			return method, cl, nil
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "content-length") {
			cl, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
}

// waitClientSees waits until the client's end of the upstream's closed
// connection c has taken the upstream's FIN (its socket is in CLOSE_WAIT)
// or RST (its socket is gone), as /proc/net/tcp shows it: so that the
// pool's check, not the request, meets the close.
func waitClientSees(t *testing.T, c net.Conn, rst bool) {
	t.Helper()
	// The client's socket: from its port to the upstream's (an ephemeral
	// port may serve connections to other addresses at once).
	local := fmt.Sprintf(":%04X", c.RemoteAddr().(*net.TCPAddr).Port)
	remote := fmt.Sprintf(":%04X", c.LocalAddr().(*net.TCPAddr).Port)
	eventually(t, "the client to see the upstream's close", func() bool {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Skipf("no /proc/net/tcp: %v", err)
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) > 3 && strings.HasSuffix(f[1], local) && strings.HasSuffix(f[2], remote) {
				return !rst && f[3] == "08" // TCP_CLOSE_WAIT
			}
		}
		return rst
	})
}

// longIdle keeps a pooled connection for the whole test on a loaded
// machine (start's default is 200ms): only the upstream closes it. It is
// also how long fasthttp's idle cleaner may sleep once the test is over,
// within TestMain's 10s for goroutines to end.
const longIdle = config.Duration(5 * time.Second)

type exchange struct {
	name string
	do   func(e *Endpoint, req *fasthttp.Request, resp *fasthttp.Response) error
}

// exchanges are Do (buffered) and DoStream (streamed), each reading the
// whole answer.
var exchanges = []exchange{
	{"Do", func(e *Endpoint, req *fasthttp.Request, resp *fasthttp.Response) error {
		return e.Do(req, resp, time.Now().Add(30*time.Second))
	}},
	{"DoStream", func(e *Endpoint, req *fasthttp.Request, resp *fasthttp.Response) error {
		rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		if rb != nil {
			b, rerr := io.ReadAll(rb)
			_ = rb.Close()
			resp.SetBody(b)
			if err == nil {
				err = rerr
			}
		}
		return err
	}},
}

// send sends method /path with body (nil: none) through x.
func send(x exchange, e *Endpoint, method string, body []byte) (*fasthttp.Response, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	req.Header.SetMethod(method)
	req.SetRequestURI("/path")
	req.Header.SetHost("upstream.test")
	if body != nil {
		req.SetBody(body)
	}
	return resp, x.do(e, req, resp)
}

// A request on a pooled connection the upstream closed or reset goes on a
// new connection and succeeds, through Do and DoStream: when the close
// came while the connection was idle, the pool's check passes the
// connection over before anything is sent; when it came with the request
// (after the check), a replayable request is sent once more. A request
// that is not replayable, or whose first try was on a new connection,
// fails and is not sent again. Nothing reaches outlier detection: the
// caller reports what Do returned.
func TestPooledConnClosedByUpstream(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 16<<20) // more than both sockets' buffers hold
	for _, x := range exchanges {
		for _, tc := range []struct {
			mode     staleMode
			method   string
			body     []byte
			readBody int64
			ok       bool
			stale    uint64 // connections the check closed
			retries  uint64
		}{
			{idleFIN, "GET", nil, 0, true, 1, 0},
			{idleRST, "GET", nil, 0, true, 1, 0},
			{idleFIN, "POST", []byte("post"), 0, true, 1, 0}, // nothing was sent: any method
			{finOnRequest, "GET", nil, 0, true, 0, 1},
			{finOnRequest, "HEAD", nil, 0, true, 0, 1},
			{finOnRequest, "OPTIONS", nil, 0, true, 0, 1},
			{finOnRequest, "TRACE", nil, 0, true, 0, 1},
			{finOnRequest, "DELETE", nil, 0, true, 0, 1},
			{rstOnRequest, "GET", nil, 0, true, 0, 1},
			// The reset cuts the write of a large body: the write fails.
			{rstOnRequest, "PUT", big, 0, true, 0, 1},
			{finOnRequest, "POST", []byte("post"), 0, false, 0, 0},
			{finOnRequest, "PATCH", []byte("patch"), 0, false, 0, 0},
			{rstOnRequest, "POST", big, 1 << 10, false, 0, 0},
			{finFirst, "GET", nil, 0, false, 0, 0},
			{cutAnswer, "GET", nil, 0, false, 0, 0},
		} {
			t.Run(fmt.Sprintf("%s/%s/%s", x.name, tc.mode, tc.method), func(t *testing.T) {
				u := startStaleUpstream(t, tc.mode, tc.readBody)
				c := start(t, config.Cluster{Name: "s", Endpoints: static(u.addr), IdleTimeout: longIdle}, Options{})
				e := c.Pick(0, false, nil)
				if tc.mode != finFirst {
					resp, err := send(x, e, "GET", nil)
					if err != nil || string(resp.Body()) != "ok" {
						t.Fatalf("the first request: %v %q", err, resp.Body())
					}
					fasthttp.ReleaseResponse(resp)
					<-u.bodies
				}
				if tc.mode == idleFIN || tc.mode == idleRST {
					u.closeNow <- struct{}{}
					waitClientSees(t, <-u.closed, tc.mode == idleRST)
					time.Sleep(idleCheckAfter) // idle long enough to be checked
				}
				resp, err := send(x, e, tc.method, tc.body)
				defer fasthttp.ReleaseResponse(resp)
				e.Report(resp.StatusCode(), err)
				st := &c.stats
				if tc.ok {
					if err != nil || resp.StatusCode() != 200 || (tc.method != "HEAD" && string(resp.Body()) != "ok") {
						t.Fatalf("%v, %d %q: want 200 ok on a new connection", err, resp.StatusCode(), resp.Body())
					}
					if got := <-u.bodies; got != int64(len(tc.body)) {
						t.Fatalf("the upstream got %d body bytes on the new connection, want %d", got, len(tc.body))
					}
					if n := st.ConnectionsOpened.Load(); n != 2 {
						t.Fatalf("%d connections opened, want 2", n)
					}
					if f := e.failures.Load(); f != 0 {
						t.Fatalf("%d failures reported to outlier detection, want 0", f)
					}
				} else {
					if err == nil {
						t.Fatalf("%d %q: want a failure", resp.StatusCode(), resp.Body())
					}
					if err == io.EOF || Classify(err) != Reset {
						t.Fatalf("%v classified %v, want reset (not a bare io.EOF)", err, Classify(err))
					}
					if n := st.ConnectionsOpened.Load(); n != 1 {
						t.Fatalf("%d connections opened, want 1 (not sent again)", n)
					}
				}
				if s, r := st.StaleConnsClosed.Load(), st.PooledConnRetries.Load(); s != tc.stale || r != tc.retries {
					t.Fatalf("%d stale connections closed, %d pooled-connection retries; want %d, %d", s, r, tc.stale, tc.retries)
				}
			})
		}
	}
}

// A request body streaming from the client is read once: a pooled
// connection the upstream closed while idle is passed over before the body
// is touched (the request succeeds), but one that breaks once the body
// began is not sent again, whatever the method.
func TestPooledConnStreamedBody(t *testing.T) {
	for _, tc := range []struct {
		mode   staleMode
		method string
		ok     bool
	}{
		{idleFIN, "PUT", true},
		{idleRST, "POST", true},
		{finOnRequest, "PUT", false},
		{rstOnRequest, "GET", false},
		{rstOnRequest, "POST", false},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.mode, tc.method), func(t *testing.T) {
			const part = "first part;"
			u := startStaleUpstream(t, tc.mode, int64(len(part)))
			c := start(t, config.Cluster{Name: "s", Endpoints: static(u.addr), IdleTimeout: longIdle}, Options{})
			e := c.Pick(0, false, nil)
			if resp, err := send(exchanges[1], e, "GET", nil); err != nil || string(resp.Body()) != "ok" {
				t.Fatalf("the first request: %v", err)
			}
			<-u.bodies
			if tc.mode == idleFIN || tc.mode == idleRST {
				u.closeNow <- struct{}{}
				waitClientSees(t, <-u.closed, tc.mode == idleRST)
				time.Sleep(idleCheckAfter) // idle long enough to be checked
			}
			// The body comes in two parts; the second only once the
			// upstream ended the connection (in the modes that end it on
			// the request), so the first was sent when it broke.
			pr, pw := io.Pipe()
			done := make(chan struct{})
			t.Cleanup(func() { close(done); _ = pw.Close() })
			go func() {
				if _, err := io.WriteString(pw, part); err != nil {
					return
				}
				if tc.mode == finOnRequest || tc.mode == rstOnRequest {
					select {
					case <-u.closed:
					case <-done:
						return
					}
				}
				_, _ = io.WriteString(pw, "second part")
				_ = pw.Close()
			}()
			req, resp := streamReq()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod(tc.method)
			size := len(part) + len("second part")
			rb, err := e.DoStreamBody(req, pr, size, resp, time.Now().Add(30*time.Second))
			if rb != nil {
				_, _ = io.Copy(io.Discard, rb)
				_ = rb.Close()
			}
			st := &c.stats
			if tc.ok {
				if err != nil || resp.StatusCode() != 200 {
					t.Fatalf("%v: want 200 on a new connection", err)
				}
				if got := <-u.bodies; got != int64(size) {
					t.Fatalf("the upstream got %d body bytes, want %d", got, size)
				}
				if s := st.StaleConnsClosed.Load(); s != 1 {
					t.Fatalf("%d stale connections closed, want 1", s)
				}
			} else {
				if err == nil {
					t.Fatalf("%d: want a failure", resp.StatusCode())
				}
				if n := st.ConnectionsOpened.Load(); n != 1 {
					t.Fatalf("%d connections opened, want 1 (not sent again)", n)
				}
			}
			if r := st.PooledConnRetries.Load(); r != 0 {
				t.Fatalf("%d pooled-connection retries of a streamed body", r)
			}
		})
	}
}

// peerGone on real sockets: an open quiet connection is usable; bytes
// nobody asked for make a plain one stale (not a TLS one: a record may
// wait there); the upstream's FIN or RST makes either stale.
func TestPeerGone(t *testing.T) {
	if !idleCheck {
		t.Skip("no idle check on this platform")
	}
	for _, tc := range []struct {
		name      string
		act       func(up *net.TCPConn)
		plain, tl bool // gone, for a plain and a TLS connection
	}{
		{"open", func(*net.TCPConn) {}, false, false},
		{"unsolicited bytes", func(up *net.TCPConn) { _, _ = up.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")) }, true, false},
		{"FIN", func(up *net.TCPConn) { _ = up.Close() }, true, true},
		{"RST", func(up *net.TCPConn) { _ = up.SetLinger(0); _ = up.Close() }, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := start(t, config.Cluster{Name: "s", Endpoints: static("127.0.0.1:1")}, Options{})
			e := c.Pick(0, false, nil)
			client, up := testserver.TCPPair(t)
			cc := &countedConn{Conn: client, e: e}
			tc.act(up)
			if tc.plain || tc.tl {
				eventually(t, "the close or the bytes to arrive", func() bool { return cc.peerGone(true) || cc.peerGone(false) })
			}
			if got := cc.peerGone(false); got != tc.plain {
				t.Fatalf("plain: gone %v, want %v", got, tc.plain)
			}
			if got := cc.peerGone(true); got != tc.tl {
				t.Fatalf("TLS: gone %v, want %v", got, tc.tl)
			}
			if tc.name == "unsolicited bytes" {
				// The peek took nothing off the socket.
				b := make([]byte, 8)
				if n, err := client.Read(b); err != nil || string(b[:n]) != "HTTP/1.1" {
					t.Fatalf("%q %v after the checks", b[:n], err)
				}
			}
		})
	}
}

// BenchmarkPeerGone is the pool's check on an idle connection that is
// open: what it adds to each request on a reused connection.
func BenchmarkPeerGone(b *testing.B) {
	if !idleCheck {
		b.Skip("no idle check on this platform")
	}
	c := start(b, config.Cluster{Name: "s", Endpoints: static("127.0.0.1:1")}, Options{})
	client, _ := testserver.TCPPair(b)
	cc := &countedConn{Conn: client, e: c.Pick(0, false, nil)}
	b.ReportAllocs()
	for b.Loop() {
		if cc.peerGone(false) {
			b.Fatal("an open connection found gone")
		}
	}
}
