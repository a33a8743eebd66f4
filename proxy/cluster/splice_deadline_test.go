package cluster

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Where a spliced chunked body's read deadline is set: every read of the
// upstream's socket through the body's reader pushes it just before it
// (cappedReader), and each splice step before its own read (move's
// before), so every wait on the upstream has its own idle bound, set in
// one place.

// An upstream whose first chunk-size line comes in part with the headers
// (the connection's reader holds "1") and then stalls: the read of the
// rest of the line waits on the socket, and the idle bound cuts it
// (ErrBodyIdle). The body was made with no read deadline (the route's was
// cleared) and the reader held bytes, so a read that set no deadline of
// its own before waiting would wait for ever (runSplice's safety net).
func TestSpliceChunksStallInHeldSizeLineIsIdle(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	_, e, gate := spliceCluster(t, 300*time.Millisecond, []string{chunkedHead + "1", "0\r\nx\r\n0\r\n\r\n"})
	rb, _ := streamGet(t, e, "/held", nil)
	t.Cleanup(func() { _ = rb.Close() })
	w, dst := testClientSocket(t)
	go func() { _, _ = io.Copy(io.Discard, w) }() // ends with the socket's cleanup
	r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}) })
	if !r.ok || r.err != ErrBodyIdle || r.n != 0 {
		t.Fatalf("SpliceChunksTo of a body stalled in its first size line: %d, %v, %v; want ErrBodyIdle after 0 bytes", r.n, r.ok, r.err)
	}
	gate <- struct{}{} // the rest comes now: too late
	if n, err := rb.Read(make([]byte, 64)); n != 0 || err != ErrBodyIdle {
		t.Fatalf("a read after the idle timeout: %d, %v", n, err)
	}
}

// An upstream that sends a chunked body in pieces cut at each kind of
// boundary (in a size line, in a chunk's data, between a chunk's CR and
// LF, in the trailers, in a spliced chunk), each piece pause after the
// one before. A pause is well under the idle timeout, two are over it: a
// wait whose deadline had been set before the wait ahead of it (one
// deadline for two waits) would be cut; each wait has its own, and the
// body arrives whole.
//
// The pause is the pace of a slow upstream, not a wait for a condition;
// the slack is idle*9/10 - pause (a deadline is pushed at most a tenth of
// idle late) = 700 ms for the scheduler to run the upstream late before a
// correct splice is cut.
const trailerHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"

func TestSpliceChunksEachWaitHasItsOwnDeadline(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const idle = 2 * time.Second
	const pause = 1100 * time.Millisecond // two are 2.2 s
	big := pattern(0x19000, 21)
	for _, tc := range []struct {
		name  string
		parts []string // the first with the headers
		body  string   // what the client gets (the chunks, up to the last chunk's line)
	}{
		// In the first size line (held by the connection's reader), in
		// the data, between CR and LF.
		{"size line and data", []string{chunkedHead + "5\r", "\nhel", "lo\r", "\n0\r\n\r\n"}, "5\r\nhello\r\n"},
		// A chunk's CR, its LF with part of the next size line, the rest.
		{"CRLF and next size line", []string{chunkedHead + "5\r\nhello", "\r", "\n5", "\r\nworld\r\n0\r\n\r\n"}, "5\r\nhello\r\n5\r\nworld\r\n"},
		// The trailers, line by line, after the last chunk's line.
		{"trailers", []string{trailerHead + "5\r\nhello\r\n0\r\n", "X-T: v\r\n", "\r\n"}, "5\r\nhello\r\n"},
		// A spliced chunk in three pieces, its CR with the last one.
		{"spliced chunk", []string{chunkedHead + "19000\r\n" + string(big[:1000]), string(big[1000:50000]), string(big[50000:]) + "\r", "\n0\r\n\r\n"}, chunk(big)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, e, gate := spliceCluster(t, idle, tc.parts)
			rb, resp := streamGet(t, e, "/paced", nil)
			t.Cleanup(func() { _ = rb.Close() })
			releaseEvery(t, gate, len(tc.parts)-1, pause)
			w, dst := testClientSocket(t)
			got := readClient(t, w, len(tc.body))
			r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}) })
			if !r.ok || r.err != nil {
				t.Fatalf("SpliceChunksTo of a paced body: %d, %v, %v; want it whole", r.n, r.ok, r.err)
			}
			clientGot(t, got, []byte(tc.body))
			if tc.name == "trailers" && string(resp.Header.Peek("X-T")) != "v" {
				t.Fatalf("trailer X-T %q, want v", resp.Header.Peek("X-T"))
			}
			if n, err := rb.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("a read after the body: %d, %v; want io.EOF", n, err)
			}
		})
	}
}

// An upstream that stalls in the trailers, after a whole trailer line:
// fasthttp's trailer reader wraps the read's timeout in an error of its
// own, and it is still told as the idle timeout (ErrBodyIdle, which the
// proxy logs as SI rather than a broken upstream), when spliced and when
// read.
func TestStallInTrailersIsIdle(t *testing.T) {
	for _, spliced := range []bool{false, true} {
		name := "read"
		if spliced {
			name = "spliced"
			if !spliceOK {
				continue
			}
		}
		t.Run(name, func(t *testing.T) {
			_, e, gate := spliceCluster(t, 300*time.Millisecond, []string{trailerHead + "5\r\nhello\r\n0\r\nX-T: v\r\n", "\r\n"})
			rb, _ := streamGet(t, e, "/trailers", nil)
			t.Cleanup(func() { _ = rb.Close() })
			var err error
			if spliced {
				w, dst := testClientSocket(t)
				go func() { _, _ = io.Copy(io.Discard, w) }() // ends with the socket's cleanup
				r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}) })
				if !r.ok || r.n != 5 {
					t.Fatalf("SpliceChunksTo: %d, %v, %v; want 5 bytes and an error", r.n, r.ok, r.err)
				}
				err = r.err
			} else {
				read := make(chan error, 1)
				go func() {
					_, err := io.ReadAll(rb)
					read <- err
				}()
				select {
				case err = <-read:
				case <-time.After(30 * time.Second): // a safety net, not a measurement
					t.Fatal("a body stalled in its trailers was not cut")
				}
			}
			if err != ErrBodyIdle {
				t.Fatalf("a body stalled in its trailers: %v, want ErrBodyIdle", err)
			}
			gate <- struct{}{} // the rest comes now: too late
			if n, err := rb.Read(make([]byte, 8)); n != 0 || err != ErrBodyIdle {
				t.Fatalf("a read after the idle timeout: %d, %v", n, err)
			}
		})
	}
}

// A body spliced with an idle bound of 0 (doH1 is given none; the cluster
// never passes 0, New makes it 60 s) sets no read deadline, rather than
// one already past: a length body and a chunked one with a spliced chunk
// go through whole.
func TestSpliceZeroIdleIsNoBound(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	length := pattern(spliceMin+5000, 31)
	big := pattern(0x19000, 32)
	for _, tc := range []struct {
		name    string
		answer  string
		chunked bool
		body    string // what the client gets
	}{
		{"length", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(length)) + string(length), false, string(length)},
		{"chunked", chunkedHead + "5\r\nhello\r\n" + chunk(big) + "0\r\n\r\n", true, "5\r\nhello\r\n" + chunk(big)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, tc.answer)
				_, _ = io.Copy(io.Discard, c) // until the client closes
			})
			c := start(t, config.Cluster{Name: "z", Endpoints: static(addr)}, Options{})
			req, resp := streamReq()
			t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
			rb, err := doStreamIdle(c.Pick(0, false, nil), req, nil, 0, resp, 0)
			fasthttp.ReleaseRequest(req)
			if err != nil || rb == nil {
				t.Fatalf("%v, body %v: want a streamed body", err, rb != nil)
			}
			t.Cleanup(func() { _ = rb.Close() })
			w, dst := testClientSocket(t)
			got := readClient(t, w, len(tc.body))
			r := runSplice(t, func() (int64, bool, error) {
				if tc.chunked {
					return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {})
				}
				return rb.(Splicer).SpliceTo(dst, func() {})
			})
			if !r.ok || r.err != nil {
				t.Fatalf("splice with no idle bound: %d, %v, %v", r.n, r.ok, r.err)
			}
			clientGot(t, got, []byte(tc.body))
		})
	}
}

// releaseEvery lets n pieces through gate, one every pause, and stops
// (and is waited for) when the test ends.
func releaseEvery(t *testing.T, gate chan<- struct{}, n int, pause time.Duration) {
	stop := make(chan struct{})
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		for range n {
			select {
			case <-time.After(pause):
			case <-stop:
				return
			}
			gate <- struct{}{}
		}
	}()
	t.Cleanup(func() { close(stop); <-paced })
}
