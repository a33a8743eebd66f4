package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Uploads (DoStreamBody) in the cases the sixth round of mutation testing
// found untested (docs/testing.md, "h1stream.go and dns.go, sixth round").

// countReader reads r and closes reached once n bytes went by.
type countReader struct {
	r       io.Reader
	n, read int
	reached chan struct{}
}

func (c *countReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.read += k
	if c.read >= c.n && c.reached != nil {
		close(c.reached)
		c.reached = nil
	}
	return k, err
}

// A client that pauses mid-upload, longer than the cluster's idle timeout,
// while its body is spliced: the upload is not cut when it goes on. The
// upstream's write deadline bounds how long the upstream takes a write,
// not how long the client takes to send the bytes; the splice step that
// waited for the client pushes it again before it writes.
func TestDoStreamBodySplicedClientPauseNotCut(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const idle = time.Second
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked ", chunked), func(t *testing.T) {
			t.Parallel()
			// 1000 bytes read with the headers, then a splice of the rest
			// that waits for the client's second half.
			const first, second = 1000 + 20<<10, 20 << 10
			reached := make(chan struct{})
			got := make(chan *upRequest, 1)
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				r := readUpRequest(bufio.NewReader(&countReader{r: c, n: first, reached: reached}))
				got <- r
				if r.err == nil {
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\ngot %d", len(fmt.Sprint("got ", len(r.body))), len(r.body))
				}
			})
			c := start(t, config.Cluster{Name: "u", Endpoints: static(addr), IdleTimeout: config.Duration(idle)}, Options{})
			e := c.Pick(0, false, nil)
			w, r := testClientSocket(t)
			data := make([]byte, first+second)
			for i := range data {
				data[i] = byte('a' + i%23)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				if _, err := w.Write(data[:first]); err != nil {
					return
				}
				// Once the upstream has read (with the headers) as many
				// bytes as the first half, the splice waits for the
				// client: the client pauses longer than idle_timeout.
				select {
				case <-reached:
				case <-stop:
					return
				}
				select {
				case <-time.After(idle + idle/2): // the client's pause: the scenario, not a measurement
				case <-stop:
					return
				}
				_, _ = w.Write(data[first:])
				_ = w.(*net.TCPConn).CloseWrite()
			}()
			t.Cleanup(func() {
				close(stop)
				_ = w.Close()
				<-done
			})
			body := &socketBody{src: r, left: first + second, maxRead: 1000, offer: true}
			size := first + second
			if chunked {
				size = -1
			}
			req, resp := streamReq()
			req.Header.SetMethod("POST")
			rb, err := e.DoStreamBody(req, body, size, resp, time.Now().Add(15*time.Second)) // a safety net: a cut upload waits for an answer until then
			if err != nil {
				t.Fatalf("DoStreamBody: %v", err)
			}
			up := received(t, got)
			if up.err != nil || !bytes.Equal(up.body, data) {
				t.Fatalf("the upstream read %d bytes (%v), want %d", len(up.body), up.err, len(data))
			}
			uploadAnswer(t, rb, err, resp, len(data))
			if spliced, errs, _ := body.splices(); fmt.Sprint(spliced) != fmt.Sprint([]int64{first + second - 1000}) || errs[0] != nil {
				t.Fatalf("spliced %v (%v), want [%d] in one splice", spliced, errs, first+second-1000)
			}
		})
	}
}

// A chunked client body offered a stretch at a time (as the proxy offers
// a chunked client body one chunk at a time) is spliced stretch by
// stretch, each one chunk upstream: after a stretch and its CRLF went up,
// the next is spliced too, not read and written.
func TestDoStreamBodyChunkedSplicedStretchByStretch(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	const stretch = uploadSpliceMin + 4000
	const total = 1000 + 3*stretch
	w, r := testClientSocket(t)
	data := sendBody(t, w, total, true)
	body := &socketBody{src: r, left: total, maxRead: 1000, offer: true, most: stretch}
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	rb, err := e.DoStreamBody(req, body, -1, resp, time.Now().Add(30*time.Second))
	up := received(t, got)
	if up.err != nil || !bytes.Equal(up.body, data) {
		t.Fatalf("the upstream read %d bytes (%v), want %d", len(up.body), up.err, total)
	}
	uploadAnswer(t, rb, err, resp, total)
	spliced, errs, _ := body.splices()
	if fmt.Sprint(spliced) != fmt.Sprint([]int64{stretch, stretch, stretch}) || errs[2] != nil {
		t.Fatalf("spliced %v (%v), want three splices of %d", spliced, errs, stretch)
	}
	if fmt.Sprint(up.chunks) != fmt.Sprint([]int{1000, stretch, stretch, stretch}) {
		t.Fatalf("chunks %v, want [1000 %d %d %d]", up.chunks, stretch, stretch, stretch)
	}
}

// tcpListed reports whether /proc/net/tcp lists a socket from local port
// lport to remote port rport (a reset socket is gone from it).
func tcpListed(lport, rport int) (bool, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false, err
	}
	port := func(s string) int {
		i := strings.LastIndexByte(s, ':')
		p, _ := strconv.ParseInt(s[i+1:], 16, 32)
		return int(p)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && port(f[1]) == lport && port(f[2]) == rport {
			return true, nil
		}
	}
	return false, nil
}

// An upstream that reset the connection before the upload's first flush:
// the flush's error ends the upload there. The client's body is not read
// on (its next bytes would have nowhere to go), and the error is the
// upstream's, not a *BodyError.
func TestDoStreamBodyNotReadOnAfterUpstreamReset(t *testing.T) {
	if _, err := tcpListed(0, 0); err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	ports := make(chan int, 1)
	reset, stop := make(chan struct{}), make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		// Reset once the client is connected and has its first bytes
		// (before, its connect could fail instead).
		select {
		case <-reset:
		case <-stop:
			return
		}
		_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
		ports <- c.RemoteAddr().(*net.TCPAddr).Port
	})
	t.Cleanup(func() { close(stop) })
	serverPort := 0
	if _, p, err := net.SplitHostPort(addr); err == nil {
		serverPort, _ = strconv.Atoi(p)
	}
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	ps, _ := pieces(100, 100)
	reads := 0
	var waitErr error
	body := &piecesReader{pieces: ps, onRead: func(i int) error {
		reads++
		if i > 0 {
			return errors.New("the body was read on after the upstream reset the connection")
		}
		// The first bytes: once the upstream has reset the connection,
		// and this side has seen the reset.
		close(reset)
		var port int
		select {
		case port = <-ports:
		case <-time.After(30 * time.Second): // a safety net, not a measurement
			waitErr = errors.New("the upstream took no connection")
			return waitErr
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			listed, err := tcpListed(port, serverPort)
			if err != nil || !listed {
				waitErr = err
				return err
			}
			if time.Now().After(deadline) {
				waitErr = errors.New("the connection was not reset")
				return waitErr
			}
		}
	}}
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	rb, err := e.DoStreamBody(req, body, 200, resp, time.Now().Add(30*time.Second))
	if waitErr != nil {
		t.Fatal(waitErr)
	}
	if rb != nil {
		_ = rb.Close()
		t.Fatalf("an answer (%d) from an upstream that reset the connection", resp.StatusCode())
	}
	var be *BodyError
	if err == nil || errors.As(err, &be) {
		t.Fatalf("%v (%T): want the upstream's error", err, err)
	}
	if reads != 1 {
		t.Fatalf("the body was read %d times, want once (%v)", reads, err)
	}
	eventually(t, "no connection left", func() bool { return e.Conns() == 0 && e.Active() == 0 })
}

// doStreamIdle is DoStreamBody with idle as the idle bound, which the
// cluster never passes as 0 (New makes 0 the 60 s default): doH1 takes 0
// as no bound at all.
func doStreamIdle(e *Endpoint, req *fasthttp.Request, body io.Reader, size int, resp *fasthttp.Response, idle time.Duration) (ResponseBody, error) {
	if err := e.admit(); err != nil {
		return nil, err
	}
	e.c.setScheme(req)
	rb, err := doH1(e, e.client, (*fasthttp.HostClient).AcquireConn, (*fasthttp.HostClient).CloseConn,
		(*fasthttp.HostClient).ReleaseConn, req, body, size, resp, time.Now().Add(20*time.Second), 0, idle, false)
	if rb == nil {
		e.done()
	}
	return rb, err
}

// An idle bound of 0 is no bound: no read or write deadline is set, not
// one that has already passed. An upload written from memory (through the
// writer, then directly), a chunked one spliced from a client socket, and
// an answer streamed off the connection all go through whole.
func TestDoStreamZeroIdleIsNoBound(t *testing.T) {
	t.Run("upload", func(t *testing.T) {
		addr, got := uploadServer(t)
		c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		for _, size := range []int{9000, -1} {
			ps, all := pieces(1000, 5000, 3000)
			req, resp := streamReq()
			req.Header.SetMethod("POST")
			rb, err := doStreamIdle(e, req, &piecesReader{pieces: ps}, size, resp, 0)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			up := received(t, got)
			if up.err != nil || !bytes.Equal(up.body, all) {
				t.Fatalf("size %d: the upstream read %d bytes (%v), want %d", size, len(up.body), up.err, len(all))
			}
			uploadAnswer(t, rb, err, resp, len(all))
		}
	})
	t.Run("spliced", func(t *testing.T) {
		if !spliceOK {
			t.Skip("no splice on this OS")
		}
		addr, got := uploadServer(t)
		c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		const total = 1000 + 40<<10
		for _, size := range []int{total, -1} {
			w, r := testClientSocket(t)
			data := sendBody(t, w, total, true)
			body := &socketBody{src: r, left: total, maxRead: 1000, offer: true}
			req, resp := streamReq()
			req.Header.SetMethod("POST")
			rb, err := doStreamIdle(e, req, body, size, resp, 0)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			up := received(t, got)
			if up.err != nil || !bytes.Equal(up.body, data) {
				t.Fatalf("size %d: the upstream read %d bytes (%v), want %d", size, len(up.body), up.err, total)
			}
			uploadAnswer(t, rb, err, resp, total)
			if spliced, _, _ := body.splices(); fmt.Sprint(spliced) != fmt.Sprint([]int64{total - 1000}) {
				t.Fatalf("size %d: spliced %v, want [%d]", size, spliced, total-1000)
			}
		}
	})
	t.Run("answer", func(t *testing.T) {
		big := bytes.Repeat([]byte("z"), 200<<10) // more than the reader's buffer
		addr := testserver.ServeTCP(t, func(c net.Conn) {
			readRequest(c)
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(big))
			_, _ = c.Write(big)
		})
		c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
		e := c.Pick(0, false, nil)
		req, resp := streamReq()
		rb, err := doStreamIdle(e, req, nil, 0, resp, 0)
		if err != nil || rb == nil {
			t.Fatalf("%v, body %v: want a streamed body", err, rb != nil)
		}
		b, err := io.ReadAll(rb)
		_ = rb.Close()
		if err != nil || !bytes.Equal(b, big) {
			t.Fatalf("read %d bytes (%v), want %d", len(b), err, len(big))
		}
	})
}

// A chunked answer spliced to a client socket (SpliceChunksTo, as the
// proxy does): the client gets the upstream's chunks with their sizes, up
// to the last chunk, whose line and trailers are left in the response
// header for the caller; small chunks are copied, large ones spliced, and
// what the connection's reader held before the splice is not lost (the
// reader the chunks are read through takes it first, then the socket,
// capped after a splice).
func TestSpliceChunksToKeepsTheChunks(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	// Forty small chunks, more than the connection's reader holds (the
	// rest is read from the socket, uncapped, up to chunkReadBuffer); a
	// large one, of which at most chunkReadBuffer is read, the rest
	// spliced; then at once a 1 MiB one: its size line comes in reads of
	// at most cappedRead bytes after the splice, so that at most that
	// much of its data is read, the rest spliced; small ones to end.
	sizes := []int{5}
	for range 39 {
		sizes = append(sizes, 1000)
	}
	sizes = append(sizes, 200<<10, 1<<20, 7, 3, 11)
	var chunks [][]byte
	for i, n := range sizes {
		chunks = append(chunks, bytes.Repeat([]byte{byte('a' + i)}, n))
	}
	var want []byte
	data := 0
	for _, c := range chunks {
		want = fmt.Appendf(want, "%x\r\n%s\r\n", len(c), c)
		data += len(c)
	}
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		// The head and the first small chunk in one write: the
		// connection's reader holds them (and maybe more) when the
		// splice starts.
		out := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(chunks[0]), chunks[0])
		if _, err := c.Write(out); err != nil {
			return
		}
		for _, ch := range chunks[1:] {
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(ch), ch); err != nil {
				return
			}
		}
		_, _ = io.WriteString(c, "0\r\nX-Sum: done\r\n\r\n")
	})
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if err != nil || rb == nil {
		t.Fatalf("%v, body %v: want a streamed body", err, rb != nil)
	}
	defer rb.Close()
	cs, ok := rb.(ChunkSplicer)
	if !ok {
		t.Fatalf("%T is no ChunkSplicer", rb)
	}
	w, dst := testClientSocket(t)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(w)
		got <- b
	}()
	before := SplicedResponseBytes()
	n, ok, err := cs.SpliceChunksTo(dst, func() {})
	spliced := SplicedResponseBytes() - before
	_ = dst.CloseWrite()
	b := <-got
	if !ok || err != nil {
		t.Fatalf("SpliceChunksTo: ok %v, %v", ok, err)
	}
	if !bytes.Equal(b, want) || n != int64(data) {
		t.Fatalf("the client got %d bytes (n %d), want %d: the upstream's chunks (%d of data)", len(b), n, len(want), data)
	}
	if least := int64(200<<10 - chunkReadBuffer + 1<<20 - cappedRead); spliced < least {
		t.Fatalf("%d bytes spliced, want at least %d: the large chunks' data, less what the reader took of them", spliced, least)
	}
	if v := string(resp.Header.Peek("X-Sum")); v != "done" {
		t.Fatalf("trailer X-Sum %q, want done", v)
	}
	if k, err := rb.Read(make([]byte, 10)); k != 0 || err != io.EOF {
		t.Fatalf("Read after the splice: %d, %v; want io.EOF", k, err)
	}
}
