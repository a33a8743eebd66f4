package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Response bodies spliced to a client's socket, as the proxy's HTTP/1.1
// server does for a body no filter reads (SpliceTo, SpliceChunksTo): what
// the client receives byte for byte, how much went through the pipe, how
// many steps it took, where an error comes from and that it stays, and
// whether the upstream connection is reused after.

// pattern is n bytes of a pattern that does not repeat for 251 bytes, so a
// byte out of place shows.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = 'a' + (seed+byte(i%251))%26
	}
	return p
}

type spliceResult struct {
	n   int64
	ok  bool
	err error
}

// runSplice runs f (a SpliceTo or SpliceChunksTo) on a goroutine of its
// own: a body that never ends fails the test instead of hanging it.
func runSplice(t *testing.T, f func() (int64, bool, error)) spliceResult {
	t.Helper()
	done := make(chan spliceResult, 1)
	go func() {
		n, ok, err := f()
		done <- spliceResult{n, ok, err}
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the splice did not return")
		return spliceResult{}
	}
}

type clientRead struct {
	b   []byte
	err error
}

// readClient reads exactly n bytes from the client's end of the socket on
// a goroutine (the splice writes while it reads).
func readClient(t *testing.T, w net.Conn, n int) <-chan clientRead {
	ch := make(chan clientRead, 1)
	go func() {
		_ = w.SetReadDeadline(time.Now().Add(30 * time.Second)) // a safety net
		b := make([]byte, n)
		k, err := io.ReadFull(w, b)
		ch <- clientRead{b[:k], err}
	}()
	return ch
}

func clientGot(t *testing.T, ch <-chan clientRead, want []byte) {
	t.Helper()
	r := <-ch
	if r.err != nil || !bytes.Equal(r.b, want) {
		t.Fatalf("the client read %d bytes (%v), want %d; first difference at %d", len(r.b), r.err, len(want), firstDiff(r.b, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// counter counts the calls of tick, which a splice makes on its own
// goroutine; read it after the splice returned.
type counter struct{ n int }

func (c *counter) tick() { c.n++ }

// spliceCluster is a cluster on one scripted upstream with a long idle
// timeout (a loaded machine does not cut a body that is being copied).
func spliceCluster(t *testing.T, idle time.Duration, answers ...[]string) (*Cluster, *Endpoint, chan<- struct{}) {
	addr, gate := scriptServer(t, answers...)
	c := start(t, config.Cluster{Name: "sp", Endpoints: static(addr), IdleTimeout: config.Duration(idle)}, Options{})
	return c, c.Pick(0, false, nil), gate
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// reused checks that the next request goes on the same upstream
// connection, which the spliced body left at the start of the next answer.
func reused(t *testing.T, c *Cluster, e *Endpoint) {
	t.Helper()
	body, resp := streamGet(t, e, "/next", nil)
	if body != nil || string(resp.Body()) != "ok" {
		t.Fatalf("the next answer: body %v, %q", body != nil, resp.Body())
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want the one reused", n)
	}
}

// A Content-Length body: what the connection's reader holds is written
// first, the rest spliced, exactly the body's length; the body has ended
// then and the connection is reused. A chunked splice refuses it.
func TestSpliceToLengthBody(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const size = 1<<20 + 13
	data := pattern(size, 1)
	hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
	c, e, gate := spliceCluster(t, 10*time.Second,
		[]string{hdr + string(data[:1000]), string(data[1000:])},
		[]string{okAnswer})
	rb, _ := streamGet(t, e, "/1", nil)
	if rb == nil || rb.ContentLength() != size {
		t.Fatalf("a body to stream of %d, got %v", size, rb)
	}
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{}
	w, dst := testClientSocket(t)
	if n, ok, err := rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}); n != 0 || ok || err != nil {
		t.Fatalf("SpliceChunksTo of a length body: %d, %v, %v", n, ok, err)
	}
	got := readClient(t, w, size)
	before := SplicedResponseBytes()
	var ticks counter
	r := runSplice(t, func() (int64, bool, error) { return rb.(Splicer).SpliceTo(dst, ticks.tick) })
	if r.n != size || !r.ok || r.err != nil {
		t.Fatalf("SpliceTo: %d, %v, %v", r.n, r.ok, r.err)
	}
	clientGot(t, got, data)
	// The 1000 bytes read with the headers were written, not spliced.
	if n := SplicedResponseBytes() - before; n != size-1000 {
		t.Fatalf("%d bytes spliced, want %d", n, size-1000)
	}
	if ticks.n < 2 {
		t.Fatalf("tick called %d times, want one before the write and one per splice step", ticks.n)
	}
	if n, err := rb.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("a read after the splice: %d, %v", n, err)
	}
	if n, ok, err := rb.(Splicer).SpliceTo(dst, ticks.tick); n != 0 || ok || err != nil {
		t.Fatalf("SpliceTo after the end: %d, %v, %v", n, ok, err)
	}
	_ = rb.Close()
	reused(t, c, e)
}

// spliceMin is the smallest body spliced: one byte less is refused
// (nothing read, the body read as usual), exactly spliceMin is spliced
// whole.
func TestSpliceToSmallestBody(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	small, at := pattern(spliceMin-1, 2), pattern(spliceMin, 3)
	hdr := "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
	c, e, gate := spliceCluster(t, 10*time.Second,
		[]string{fmt.Sprintf(hdr, len(small)), string(small)},
		[]string{fmt.Sprintf(hdr, len(at)), string(at)},
		[]string{okAnswer})
	w, dst := testClientSocket(t)

	rb, _ := streamGet(t, e, "/small", nil)
	gate <- struct{}{}
	if n, ok, err := rb.(Splicer).SpliceTo(dst, func() {}); n != 0 || ok || err != nil {
		t.Fatalf("SpliceTo of spliceMin-1 bytes: %d, %v, %v", n, ok, err)
	}
	if b, err := io.ReadAll(rb); err != nil || !bytes.Equal(b, small) {
		t.Fatalf("the body read after a refused splice: %d bytes, %v", len(b), err)
	}
	_ = rb.Close()

	rb, _ = streamGet(t, e, "/at", nil)
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{}
	got := readClient(t, w, len(at))
	before := SplicedResponseBytes()
	r := runSplice(t, func() (int64, bool, error) { return rb.(Splicer).SpliceTo(dst, func() {}) })
	if r.n != int64(len(at)) || !r.ok || r.err != nil {
		t.Fatalf("SpliceTo of spliceMin bytes: %d, %v, %v", r.n, r.ok, r.err)
	}
	clientGot(t, got, at)
	// The headers came alone: every byte of the body went through the pipe.
	if n := SplicedResponseBytes() - before; n != int64(len(at)) {
		t.Fatalf("%d bytes spliced, want %d", n, len(at))
	}
	_ = rb.Close()
	reused(t, c, e)
}

// An upstream that stops sending mid-body: the splice gives up at the
// idle timeout with ErrBodyIdle, and the body stays failed (a later read
// does not go on with what the upstream sends after).
func TestSpliceToUpstreamStallIsIdle(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const size = 1 << 20
	data := pattern(size, 4)
	hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
	_, e, gate := spliceCluster(t, 500*time.Millisecond,
		[]string{hdr + string(data[:1000]), string(data[1000 : 300<<10]), string(data[300<<10:])})
	rb, _ := streamGet(t, e, "/stall", nil)
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{}
	w, dst := testClientSocket(t)
	go func() { _, _ = io.Copy(io.Discard, w) }() // ends with the socket's cleanup
	r := runSplice(t, func() (int64, bool, error) { return rb.(Splicer).SpliceTo(dst, func() {}) })
	if !r.ok || r.err != ErrBodyIdle || r.n < 1000 || r.n > 300<<10 {
		t.Fatalf("SpliceTo of a stalled body: %d, %v, %v; want ErrBodyIdle after 1000 to %d bytes", r.n, r.ok, r.err, 300<<10)
	}
	gate <- struct{}{} // the rest comes now: too late
	if n, err := rb.Read(make([]byte, 64<<10)); n != 0 || err != ErrBodyIdle {
		t.Fatalf("a read after the idle timeout: %d, %v", n, err)
	}
}

// An upstream that closes mid-body: io.ErrUnexpectedEOF, after every
// byte it sent, and the body stays failed.
func TestSpliceToUpstreamCut(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const size, sent = 1 << 20, 400 << 10
	data := pattern(sent, 5)
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		readRequest(c)
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", size, data)
	})
	c := start(t, config.Cluster{Name: "cut", Endpoints: static(addr), IdleTimeout: config.Duration(10 * time.Second)}, Options{})
	rb, _ := streamGet(t, c.Pick(0, false, nil), "/cut", nil)
	t.Cleanup(func() { _ = rb.Close() })
	w, dst := testClientSocket(t)
	got := readClient(t, w, sent)
	r := runSplice(t, func() (int64, bool, error) { return rb.(Splicer).SpliceTo(dst, func() {}) })
	if r.n != sent || !r.ok || r.err != io.ErrUnexpectedEOF {
		t.Fatalf("SpliceTo of a cut body: %d, %v, %v; want %d, io.ErrUnexpectedEOF", r.n, r.ok, r.err, sent)
	}
	clientGot(t, got, data)
	if n, err := rb.Read(make([]byte, 10)); n != 0 || err != io.ErrUnexpectedEOF {
		t.Fatalf("a read after the cut: %d, %v", n, err)
	}
}

// A client that resets its connection mid-splice: a *WriteError holding
// the reset, not the upstream's error, and the splice returns (the pipe's
// write side reports the failure instead of retrying it).
func TestSpliceToClientReset(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const size = 8 << 20
	data := pattern(size, 6)
	hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
	_, e, gate := spliceCluster(t, 10*time.Second, []string{hdr + string(data[:1000]), string(data[1000:])})
	rb, _ := streamGet(t, e, "/reset", nil)
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{}
	w, dst := testClientSocket(t)
	got := readClient(t, w, 100<<10)
	go func() {
		<-got
		_ = w.(*net.TCPConn).SetLinger(0)
		_ = w.Close() // RST
	}()
	r := runSplice(t, func() (int64, bool, error) { return rb.(Splicer).SpliceTo(dst, func() {}) })
	var we *WriteError
	if !r.ok || !errors.As(r.err, &we) || !(errors.Is(r.err, syscall.ECONNRESET) || errors.Is(r.err, syscall.EPIPE)) {
		t.Fatalf("SpliceTo to a reset client: %d, %v, %v (%T); want a *WriteError of the reset", r.n, r.ok, r.err, r.err)
	}
	if r.n < 100<<10 || r.n >= size {
		t.Fatalf("%d bytes written before the reset, want at least the %d read", r.n, 100<<10)
	}
	if !IsWriteError(r.err) || !strings.HasPrefix(r.err.Error(), "writing the response body: ") {
		t.Fatalf("the error reads %q", r.err)
	}
}

// chunk frames data as one chunk.
func chunk(data []byte) string {
	return strconv.FormatInt(int64(len(data)), 16) + "\r\n" + string(data) + "\r\n"
}

const chunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

// drainBodies empties h1BodyPool, so that the next body starts without
// the size-line and writev buffers a pooled one keeps.
func drainBodies() {
	for range 1000 {
		if h1BodyPool.Get() == nil {
			return
		}
	}
}

// Small chunks the reader holds whole go to the client with their framing
// (sizes as the upstream sent them, the last chunk and the trailers left
// to the caller), 16 chunks to a writev: 40 chunks take 3 writes, and the
// CRLF owed before the last chunk a fourth. Nothing is spliced; the
// trailers are in the answer's header; the connection is reused.
func TestSpliceChunksGathered(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	var wire strings.Builder
	var data int
	for i := range 40 {
		p := pattern(1+i*7, byte(i))
		wire.WriteString(chunk(p))
		data += len(p)
	}
	c, e, _ := spliceCluster(t, 10*time.Second,
		[]string{chunkedHead + wire.String() + "0\r\nX-Sum: 40\r\n\r\n"},
		[]string{okAnswer})
	drainBodies()
	rb, resp := streamGet(t, e, "/chunks", nil)
	t.Cleanup(func() { _ = rb.Close() })
	w, dst := testClientSocket(t)
	if n, ok, err := rb.(Splicer).SpliceTo(dst, func() {}); n != 0 || ok || err != nil {
		t.Fatalf("SpliceTo of a chunked body: %d, %v, %v", n, ok, err)
	}
	got := readClient(t, w, wire.Len())
	before := SplicedResponseBytes()
	var ticks counter
	r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, ticks.tick) })
	if r.n != int64(data) || !r.ok || r.err != nil {
		t.Fatalf("SpliceChunksTo: %d, %v, %v; want %d", r.n, r.ok, r.err, data)
	}
	clientGot(t, got, []byte(wire.String()))
	if ticks.n != 4 {
		t.Fatalf("%d writes, want 4 (16 + 16 + 8 chunks, then the last CRLF)", ticks.n)
	}
	if n := SplicedResponseBytes() - before; n != 0 {
		t.Fatalf("%d bytes spliced, want none", n)
	}
	if v := string(resp.Header.Peek("X-Sum")); v != "40" {
		t.Fatalf("trailer X-Sum %q", v)
	}
	if n, err := rb.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("a read after the splice: %d, %v", n, err)
	}
	if n, ok, err := rb.(ChunkSplicer).SpliceChunksTo(dst, ticks.tick); n != 0 || ok || err != nil {
		t.Fatalf("SpliceChunksTo after the end: %d, %v, %v", n, ok, err)
	}
	_ = rb.Close()
	reused(t, c, e)
}

// A chunk the reader holds whole up to the end of its data (its CRLF not
// yet come) is gathered with the one before it; one it holds only a part
// of is not (it is read whole first, then written on its own).
func TestSpliceChunksGatherUpToHeldEnd(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	a, b := pattern(10, 7), pattern(11, 8)
	for _, tc := range []struct {
		name   string
		cut    int // bytes of b held with the headers
		writes int
	}{{"whole", len(b), 2}, {"part", 5, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			wire := chunk(a) + chunk(b)
			held := len(chunk(a)) + len("b\r\n") + tc.cut
			_, e, gate := spliceCluster(t, 10*time.Second,
				[]string{chunkedHead + wire[:held], wire[held:] + "0\r\n\r\n"})
			rb, _ := streamGet(t, e, "/held", nil)
			t.Cleanup(func() { _ = rb.Close() })
			gate <- struct{}{}
			w, dst := testClientSocket(t)
			got := readClient(t, w, len(wire))
			var ticks counter
			r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, ticks.tick) })
			if r.n != int64(len(a)+len(b)) || !r.ok || r.err != nil {
				t.Fatalf("SpliceChunksTo: %d, %v, %v", r.n, r.ok, r.err)
			}
			clientGot(t, got, []byte(wire))
			if ticks.n != tc.writes {
				t.Fatalf("%d writes, want %d", ticks.n, tc.writes)
			}
		})
	}
}

// A chunk larger than chunkCopyMax that the reader does not hold: its size
// line and what is held are written, the rest spliced, exactly up to the
// chunk's end; the chunks after it are read as usual, trailers too.
// A chunk of exactly chunkCopyMax is read and written, not spliced.
func TestSpliceChunksLarge(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	big, small := pattern(0x19000, 9), []byte("hello")
	at, over := pattern(chunkCopyMax, 10), pattern(chunkCopyMax+1, 11)
	bigWire := chunk(big) + chunk(small)
	bigHeld := len("19000\r\n") + 1000
	atWire, overWire := chunk(at), chunk(over)
	const held = 100 // of the chunks at and over, with the headers
	c, e, gate := spliceCluster(t, 10*time.Second,
		[]string{chunkedHead + bigWire[:bigHeld], bigWire[bigHeld:] + "0\r\nX-T: v\r\n\r\n"},
		[]string{chunkedHead + atWire[:6+held], atWire[6+held:] + "0\r\n\r\n"},
		[]string{chunkedHead + overWire[:6+held], overWire[6+held:] + "0\r\n\r\n"},
		[]string{okAnswer})
	w, dst := testClientSocket(t)
	for _, tc := range []struct {
		wire    string
		data    int
		spliced int
		trailer string
	}{
		{bigWire, len(big) + len(small), len(big) - 1000, "v"},
		{atWire, len(at), 0, ""},
		{overWire, len(over), len(over) - held, ""},
	} {
		rb, resp := streamGet(t, e, "/large", nil)
		gate <- struct{}{}
		got := readClient(t, w, len(tc.wire))
		before := SplicedResponseBytes()
		var ticks counter
		r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, ticks.tick) })
		if r.n != int64(tc.data) || !r.ok || r.err != nil {
			_ = rb.Close()
			t.Fatalf("SpliceChunksTo: %d, %v, %v; want %d", r.n, r.ok, r.err, tc.data)
		}
		clientGot(t, got, []byte(tc.wire))
		if n := SplicedResponseBytes() - before; n != int64(tc.spliced) {
			_ = rb.Close()
			t.Fatalf("chunk of %d: %d bytes spliced, want %d", tc.data, n, tc.spliced)
		}
		if tc.spliced > 0 && ticks.n < 3 {
			t.Fatalf("%d ticks, want one for the size line and held bytes, at least one per splice step, one for the last CRLF", ticks.n)
		}
		if v := string(resp.Header.Peek("X-T")); v != tc.trailer {
			t.Fatalf("trailer X-T %q, want %q", v, tc.trailer)
		}
		_ = rb.Close()
	}
	reused(t, c, e)
}

// A chunk over chunkCopyMax that a read after the one before brought in
// whole (its CRLF not yet come) is read and written, not spliced: nothing
// of it is left on the socket.
func TestSpliceChunksLargeHeldWhole(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	a, b := pattern(10, 12), pattern(0x5000, 13)
	_, e, gate := spliceCluster(t, 10*time.Second,
		[]string{chunkedHead + "a\r\n" + string(a), "\r\n" + strconv.FormatInt(int64(len(b)), 16) + "\r\n" + string(b), "\r\n0\r\n\r\n"})
	rb, _ := streamGet(t, e, "/whole", nil)
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{} // b, whole, read with a's CRLF
	w, dst := testClientSocket(t)
	wire := chunk(a) + chunk(b)
	got := readClient(t, w, len(wire))
	var ticks counter
	tick := func() {
		ticks.tick()
		if ticks.n == 2 { // b is being written: its CRLF may come
			gate <- struct{}{}
		}
	}
	r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, tick) })
	if r.n != int64(len(a)+len(b)) || !r.ok || r.err != nil {
		t.Fatalf("SpliceChunksTo: %d, %v, %v", r.n, r.ok, r.err)
	}
	clientGot(t, got, []byte(wire))
}

// An upstream that stops sending a chunked body, between chunks or in a
// spliced one: ErrBodyIdle at the idle timeout, and the body stays failed.
func TestSpliceChunksUpstreamStallIsIdle(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	big := pattern(0x19000, 14)
	for _, tc := range []struct {
		name  string
		parts []string
		min   int64
	}{
		{"between chunks", []string{chunkedHead + "5\r\nhello\r\n", "0\r\n\r\n"}, 5},
		{"in a spliced chunk", []string{chunkedHead + "19000\r\n" + string(big[:1000]), string(big[1000:50000]), string(big[50000:]) + "\r\n0\r\n\r\n"}, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, e, gate := spliceCluster(t, 500*time.Millisecond, tc.parts)
			rb, _ := streamGet(t, e, "/stall", nil)
			t.Cleanup(func() { _ = rb.Close() })
			if len(tc.parts) == 3 {
				gate <- struct{}{}
			}
			w, dst := testClientSocket(t)
			go func() { _, _ = io.Copy(io.Discard, w) }() // ends with the socket's cleanup
			r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}) })
			if !r.ok || r.err != ErrBodyIdle || r.n < tc.min {
				t.Fatalf("SpliceChunksTo of a stalled body: %d, %v, %v; want ErrBodyIdle after %d bytes or more", r.n, r.ok, r.err, tc.min)
			}
			gate <- struct{}{} // the rest comes now: too late
			if n, err := rb.Read(make([]byte, 64<<10)); n != 0 || err != ErrBodyIdle {
				t.Fatalf("a read after the idle timeout: %d, %v", n, err)
			}
		})
	}
}

// An upstream that closes a chunked body early (in a chunk read whole, in
// a spliced one, before the trailers' end): io.ErrUnexpectedEOF, and the
// body stays failed.
func TestSpliceChunksUpstreamCut(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	big := pattern(0x19000, 15)
	for _, tc := range []struct {
		name string
		wire string
		data int64
	}{
		{"small chunk", chunkedHead + "5\r\nhello\r\n100\r\n0123456789", 5},
		{"spliced chunk", chunkedHead + "19000\r\n" + string(big[:60000]), 60000},
		{"trailers", chunkedHead + "5\r\nhello\r\n0\r\n", 5},
		{"trailer line", chunkedHead + "5\r\nhello\r\n0\r\nX-T: v\r\n", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, tc.wire)
			})
			c := start(t, config.Cluster{Name: "cut", Endpoints: static(addr), IdleTimeout: config.Duration(10 * time.Second)}, Options{})
			rb, _ := streamGet(t, c.Pick(0, false, nil), "/cut", nil)
			t.Cleanup(func() { _ = rb.Close() })
			w, dst := testClientSocket(t)
			go func() { _, _ = io.Copy(io.Discard, w) }() // ends with the socket's cleanup
			r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}) })
			if !r.ok || r.err != io.ErrUnexpectedEOF || r.n != tc.data {
				t.Fatalf("SpliceChunksTo of a cut body: %d, %v, %v; want %d, io.ErrUnexpectedEOF", r.n, r.ok, r.err, tc.data)
			}
			if n, err := rb.Read(make([]byte, 10)); n != 0 || err != io.ErrUnexpectedEOF {
				t.Fatalf("a read after the cut: %d, %v", n, err)
			}
		})
	}
}

// A client that resets its connection while a chunked body is spliced to
// it: a *WriteError of the reset.
func TestSpliceChunksClientReset(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	var wire strings.Builder
	for i := range 40 {
		wire.WriteString(chunk(pattern(200<<10, byte(i))))
	}
	_, e, gate := spliceCluster(t, 10*time.Second, []string{chunkedHead, wire.String() + "0\r\n\r\n"})
	rb, _ := streamGet(t, e, "/reset", nil)
	t.Cleanup(func() { _ = rb.Close() })
	gate <- struct{}{}
	w, dst := testClientSocket(t)
	got := readClient(t, w, 100<<10)
	go func() {
		<-got
		_ = w.(*net.TCPConn).SetLinger(0)
		_ = w.Close() // RST
	}()
	r := runSplice(t, func() (int64, bool, error) { return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {}) })
	if !r.ok || !IsWriteError(r.err) || !(errors.Is(r.err, syscall.ECONNRESET) || errors.Is(r.err, syscall.EPIPE)) {
		t.Fatalf("SpliceChunksTo to a reset client: %d, %v, %v (%T); want a *WriteError of the reset", r.n, r.ok, r.err, r.err)
	}
}

// An upstream that sends a body slowly but steadily, for longer than the
// idle timeout with no pause near it: each step of the splice (or each
// chunk) pushes the read deadline ahead, and the body arrives whole.
func TestSpliceSlowBodyNotCut(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const idle = time.Second
	const steps = 6 // pieces after the first, idle/3 apart
	length := pattern(spliceMin+steps*1000, 18)
	big := pattern(0x19000, 19)
	var chunks []string
	for i := range steps + 1 {
		chunks = append(chunks, chunk(pattern(100, byte(i))))
	}
	for _, tc := range []struct {
		name    string
		head    string
		body    []byte
		chunked bool
		wire    string // what the client gets, when not the body
	}{
		{name: "length", head: fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(length)), body: length},
		{name: "chunks", head: chunkedHead, body: []byte(strings.Join(chunks, "")), chunked: true},
		{name: "spliced chunk", head: chunkedHead, body: []byte(chunk(big)), chunked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first piece comes with the headers; each other one is
			// sent idle/3 after the one before.
			cut := len(tc.body) - steps*1000
			if tc.name == "chunks" {
				cut = len(chunks[0])
			}
			parts := []string{tc.head + string(tc.body[:cut])}
			for i := range steps {
				from, to := cut+i*1000, cut+(i+1)*1000
				if tc.name == "chunks" {
					from, to = len(chunks[0])*(i+1), len(chunks[0])*(i+2)
				}
				if i == steps-1 {
					to = len(tc.body)
				}
				p := string(tc.body[from:to])
				if i == steps-1 && tc.chunked {
					p += "0\r\n\r\n"
				}
				parts = append(parts, p)
			}
			_, e, gate := spliceCluster(t, idle, parts)
			rb, _ := streamGet(t, e, "/slow", nil)
			t.Cleanup(func() { _ = rb.Close() })
			releaseEvery(t, gate, steps, idle/3) // the pace of a slow upstream, not a wait for a condition
			w, dst := testClientSocket(t)
			got := readClient(t, w, len(tc.body))
			r := runSplice(t, func() (int64, bool, error) {
				if tc.chunked {
					return rb.(ChunkSplicer).SpliceChunksTo(dst, func() {})
				}
				return rb.(Splicer).SpliceTo(dst, func() {})
			})
			if !r.ok || r.err != nil {
				t.Fatalf("SpliceTo of a slow body: %d, %v, %v", r.n, r.ok, r.err)
			}
			clientGot(t, got, tc.body)
		})
	}
}
