package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// Hostile HTTP/2 peers (issue 12): each speaks raw frames to a real weft
// listener and must get a protocol error, a GOAWAY or a RST_STREAM, cost
// bounded memory, and leave every other connection served.

const h2BadConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    limits: {write_timeout: 300ms, idle_timeout: 2s}
    http2: {max_concurrent_streams: 8, max_header_list_size: 8192}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /big}
            direct_response: {status: 200, body: "{{big}}"}
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// h2Bad is a proxy under attack and its upstream.
type h2Bad struct {
	p    *Proxy
	url  string
	addr string
	up   *testserver.Upstream
}

func startH2Bad(t *testing.T, big int) *h2Bad {
	t.Helper()
	up := testserver.Start(t, "up")
	p, url := startProxy(t, h2BadConfig, map[string]string{"up": up.Addr, "big": strings.Repeat("x", big)})
	return &h2Bad{p: p, url: url, addr: strings.TrimPrefix(url, "http://"), up: up}
}

// stillServes proves the attack cost nobody else anything: a new HTTP/2
// connection and a new HTTP/1.1 connection each get a 200.
func (b *h2Bad) stillServes(t *testing.T) {
	t.Helper()
	cl := h2cClient()
	defer cl.CloseIdleConnections()
	resp, err := cl.Get(b.url + "/after")
	if err != nil {
		t.Fatalf("HTTP/2 after the attack: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/2 after the attack: %s %d", resp.Proto, resp.StatusCode)
	}
	hc := &fasthttp.Client{}
	defer hc.CloseIdleConnections()
	if st, body, _ := get(t, hc, b.url+"/after"); st != 200 {
		t.Fatalf("HTTP/1.1 after the attack: %d %q", st, body)
	}
}

// rawH2 is a client speaking frames by hand.
type rawH2 struct {
	t    *testing.T
	c    net.Conn
	bw   *bufio.Writer
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	// maxFrame is the server's SETTINGS_MAX_FRAME_SIZE.
	maxFrame uint32
}

// dialRawH2 connects, sends the preface and settings, and acknowledges
// the server's SETTINGS (so its limits are in force, not "in flight").
func dialRawH2(t *testing.T, addr string, d *net.Dialer, settings ...http2.Setting) *rawH2 {
	t.Helper()
	if d == nil {
		d = &net.Dialer{}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawH2{t: t, c: c, bw: bufio.NewWriterSize(c, 64<<10)}
	r.fr = http2.NewFramer(r.bw, c)
	r.fr.AllowIllegalWrites = true // the point of the exercise
	r.fr.AllowIllegalReads = true
	r.enc = hpack.NewEncoder(&r.hbuf)
	if _, err := r.bw.WriteString(http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	r.must(r.fr.WriteSettings(settings...))
	r.flush()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			r.maxFrame = 16384
			if v, ok := sf.Value(http2.SettingMaxFrameSize); ok {
				r.maxFrame = v
			}
			r.must(r.fr.WriteSettingsAck())
			r.flush()
			return r
		}
	}
}

func (r *rawH2) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawH2) flush() {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	r.must(r.bw.Flush())
}

// block encodes a GET of path plus extra header pairs.
func (r *rawH2) block(path string, extra ...string) []byte {
	r.hbuf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "weft.test"}, {Name: ":path", Value: path}} {
		_ = r.enc.WriteField(f)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		_ = r.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return append([]byte(nil), r.hbuf.Bytes()...)
}

func (r *rawH2) headers(id uint32, path string, endStream bool) error {
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(path),
		EndStream: endStream, EndHeaders: true})
}

// outcome is how the server answered an attack.
type outcome struct {
	goAway    *http2.GoAwayFrame
	closed    bool // EOF or reset: the server hung up
	rsts      map[uint32]http2.ErrCode
	statuses  map[uint32]string
	frameErrs int
}

// readUntil reads frames (acknowledging SETTINGS and PINGs as a client
// would not need to) until done says so, the server hangs up, or max.
func (r *rawH2) readUntil(max time.Duration, done func(*outcome) bool) *outcome {
	o := &outcome{rsts: map[uint32]http2.ErrCode{}, statuses: map[uint32]string{}}
	dec := hpack.NewDecoder(64<<10, nil)
	deadline := time.Now().Add(max)
	_ = r.c.SetReadDeadline(deadline)
	for !done(o) {
		f, err := r.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return o
			}
			if _, ok := err.(http2.StreamError); ok {
				o.frameErrs++
				continue
			}
			o.closed = true
			return o
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			o.goAway = f
		case *http2.RSTStreamFrame:
			o.rsts[f.StreamID] = f.ErrCode
		case *http2.HeadersFrame:
			if hf, err := dec.DecodeFull(f.HeaderBlockFragment()); err == nil {
				for _, h := range hf {
					if h.Name == ":status" {
						o.statuses[f.StreamID] = h.Value
					}
				}
			}
		}
	}
	return o
}

func goneOrGoAway(o *outcome) bool { return o.closed || o.goAway != nil }

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Malformed frames end the connection with a GOAWAY naming the error:
// DATA on stream 0 (PROTOCOL_ERROR) and a frame longer than the
// SETTINGS_MAX_FRAME_SIZE the server advertised (FRAME_SIZE_ERROR).
func TestH2BadInputMalformedFrames(t *testing.T) {
	b := startH2Bad(t, 1)
	for _, c := range []struct {
		name string
		want http2.ErrCode
		send func(r *rawH2) error
	}{
		{"DATA on stream 0", http2.ErrCodeProtocol, func(r *rawH2) error {
			return r.fr.WriteData(0, false, []byte("hello"))
		}},
		{"frame too large", http2.ErrCodeFrameSize, func(r *rawH2) error {
			if err := r.headers(1, "/x", false); err != nil {
				return err
			}
			// A DATA frame header announcing one byte more than allowed.
			n := r.maxFrame + 1
			if _, err := r.bw.Write([]byte{byte(n >> 16), byte(n >> 8), byte(n), byte(http2.FrameData), 0, 0, 0, 0, 1}); err != nil {
				return err
			}
			_, err := r.bw.Write(make([]byte, 1024))
			return err
		}},
		{"HEADERS on stream 2 (even: server-initiated)", http2.ErrCodeProtocol, func(r *rawH2) error {
			return r.headers(2, "/x", true)
		}},
		{"WINDOW_UPDATE of 0", http2.ErrCodeProtocol, func(r *rawH2) error {
			return r.fr.WriteWindowUpdate(0, 0)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dialRawH2(t, b.addr, nil)
			r.must(c.send(r))
			_ = r.bw.Flush() // the server may hang up mid-write
			o := r.readUntil(5*time.Second, goneOrGoAway)
			if o.goAway == nil {
				t.Fatalf("no GOAWAY (closed=%v)", o.closed)
			}
			if o.goAway.ErrCode != c.want {
				t.Fatalf("GOAWAY %v, want %v", o.goAway.ErrCode, c.want)
			}
			if o2 := r.readUntil(5*time.Second, func(o *outcome) bool { return o.closed }); !o2.closed {
				t.Fatal("the connection stayed open after the GOAWAY")
			}
			b.stillServes(t)
		})
	}
	if n := b.up.Hits.Load(); n != 8 { // the two stillServes requests per case
		t.Fatalf("the upstream saw %d requests, want 8 from the checks only", n)
	}
}

// A header list beyond max_header_list_size is refused (431, or a reset)
// and an HPACK bomb (one big header inserted in the dynamic table, then
// referenced by its one-byte index thousands of times) decodes no further
// than the limit: the heap does not grow by what the bombs would expand to.
func TestH2BadInputOversizedHeadersAndHPACKBomb(t *testing.T) {
	b := startH2Bad(t, 1)

	t.Run("oversized header list", func(t *testing.T) {
		r := dialRawH2(t, b.addr, nil)
		blk := r.block("/big-headers", "x-big", strings.Repeat("a", 12<<10)) // limit 8192
		r.must(r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true, EndHeaders: true}))
		r.flush()
		o := r.readUntil(5*time.Second, func(o *outcome) bool {
			return goneOrGoAway(o) || o.statuses[1] != "" || o.rsts[1] != 0
		})
		if o.statuses[1] != "431" && o.rsts[1] == 0 && !goneOrGoAway(o) {
			t.Fatalf("oversized headers not refused: %+v", o)
		}
		b.stillServes(t)
	})

	t.Run("HPACK bomb", func(t *testing.T) {
		before := heapInUse()
		const bombs, refs = 20, 16000 // 20 x 16000 x ~4 KiB = ~1.3 GB if decoded
		for i := 0; i < bombs; i++ {
			r := dialRawH2(t, b.addr, nil)
			r.hbuf.Reset()
			_ = r.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
			_ = r.enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
			_ = r.enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/bomb"})
			_ = r.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: "weft.test"})
			// Literal with incremental indexing: becomes dynamic entry 62.
			_ = r.enc.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
			blk := append([]byte(nil), r.hbuf.Bytes()...)
			for j := 0; j < refs; j++ {
				blk = append(blk, 0x80|62) // indexed header field, index 62
			}
			// Split into frames of the default max size.
			first := true
			for len(blk) > 0 {
				n := min(len(blk), 16384)
				frag := blk[:n]
				blk = blk[n:]
				var err error
				if first {
					err = r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag, EndStream: true, EndHeaders: len(blk) == 0})
					first = false
				} else {
					err = r.fr.WriteContinuation(1, len(blk) == 0, frag)
				}
				if err != nil {
					break
				}
			}
			_ = r.bw.Flush()
			o := r.readUntil(5*time.Second, func(o *outcome) bool {
				return goneOrGoAway(o) || o.statuses[1] != "" || o.rsts[1] != 0
			})
			if o.statuses[1] == "200" || (o.statuses[1] == "" && o.rsts[1] == 0 && !goneOrGoAway(o)) {
				t.Fatalf("HPACK bomb %d not refused: %+v", i, o)
			}
			_ = r.c.Close()
		}
		if grew := int64(heapInUse()) - int64(before); grew > 64<<20 {
			t.Fatalf("the heap grew by %d MiB under %d HPACK bombs", grew>>20, bombs)
		}
		b.stillServes(t)
	})
	if n := b.up.Hits.Load(); n != 4 {
		t.Fatalf("the upstream saw %d requests, want 4 from the checks only", n)
	}
}

// Streams beyond max_concurrent_streams (8) are refused one by one
// (PROTOCOL_ERROR once the client acknowledged the limit, REFUSED_STREAM
// while it may not have seen it); the streams within it are served.
func TestH2BadInputTooManyConcurrentStreams(t *testing.T) {
	b := startH2Bad(t, 1)
	r := dialRawH2(t, b.addr, nil)
	const open = 20
	for i := 0; i < open; i++ {
		// No END_STREAM: each stream stays open, its body never ends.
		r.must(r.headers(uint32(2*i+1), "/slow", false))
	}
	r.flush()
	o := r.readUntil(5*time.Second, func(o *outcome) bool { return goneOrGoAway(o) || len(o.rsts) >= open-8 })
	if o.goAway != nil || o.closed {
		t.Fatalf("the whole connection was dropped: %+v", o)
	}
	for id, code := range o.rsts {
		if id <= 2*8-1 {
			t.Errorf("stream %d, within the limit, was reset: %v", id, code)
		}
		if code != http2.ErrCodeProtocol && code != http2.ErrCodeRefusedStream {
			t.Errorf("stream %d reset with %v", id, code)
		}
	}
	if len(o.rsts) != open-8 {
		t.Fatalf("%d streams refused, want %d", len(o.rsts), open-8)
	}
	_ = r.c.Close()
	b.stillServes(t)
}

// Rapid reset (CVE-2023-44487): a client opening streams and resetting
// them at once, thousands in a row, gets a GOAWAY (ENHANCE_YOUR_CALM) or
// is cut, and the upstream sees far fewer requests than streams opened.
func TestH2BadInputRapidReset(t *testing.T) {
	b := startH2Bad(t, 1)
	r := dialRawH2(t, b.addr, nil)
	var res atomic.Pointer[outcome]
	done := make(chan struct{})
	go func() {
		defer close(done)
		res.Store(r.readUntil(20*time.Second, goneOrGoAway))
	}()
	const streams = 5000
	sent := 0
	_ = r.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < streams; i++ {
		id := uint32(2*i + 1)
		if r.headers(id, "/rr", true) != nil || r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
		sent++
		if i%50 == 49 && r.bw.Flush() != nil {
			break
		}
	}
	_ = r.bw.Flush()
	<-done
	o := res.Load()
	if o.goAway == nil && !o.closed {
		t.Fatalf("%d streams opened and reset, and the connection is still open", sent)
	}
	if o.goAway != nil {
		t.Logf("GOAWAY %v after %d of %d streams sent; the upstream saw %d", o.goAway.ErrCode, sent, streams, b.up.Hits.Load())
		// x/net's mitigation answers ENHANCE_YOUR_CALM when handlers
		// pile up; a server that kept up with the resets instead ends the
		// idle connection later with NO_ERROR. Either way what matters is
		// below: the upstream saw few of the streams.
		switch o.goAway.ErrCode {
		case http2.ErrCodeEnhanceYourCalm, http2.ErrCodeProtocol, http2.ErrCodeNo:
		default:
			t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM (or NO_ERROR at the idle timeout)", o.goAway.ErrCode)
		}
	}
	// The count is final once the connection and its handlers are gone.
	_ = r.c.Close()
	eventually(t, 10*time.Second, "the connection's goroutines to end", h2ServerGone)
	hits := b.up.Hits.Load()
	if hits > streams/10 {
		t.Fatalf("the upstream saw %d requests for %d streams reset at once", hits, sent)
	}
	_ = r.c.Close()
	before := b.up.Hits.Load()
	b.stillServes(t)
	if b.up.Hits.Load() != before+2 {
		t.Fatalf("the checks did not reach the upstream")
	}
}

// A CONTINUATION flood (CVE-2024-27316 and kin): HEADERS without
// END_HEADERS, then CONTINUATION frames without end. The server closes the
// connection long before the flood is spent, whether the frames carry
// header bytes or are empty.
func TestH2BadInputContinuationFlood(t *testing.T) {
	b := startH2Bad(t, 1)
	for _, c := range []struct {
		name   string
		frames int
		frag   []byte
	}{
		{"1 KiB fragments", 20000, bytes.Repeat([]byte{0x40, 0x01, 'x', 0x7f, 0x00}, 200)}, // 20 MiB in all
		{"empty fragments", 2000000, nil},                                                  // 18 MB of frame headers
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dialRawH2(t, b.addr, nil)
			var res atomic.Pointer[outcome]
			done := make(chan struct{})
			go func() {
				defer close(done)
				res.Store(r.readUntil(20*time.Second, goneOrGoAway))
			}()
			_ = r.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			var werr error
			werr = r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block("/cont"), EndStream: true})
			sent := 0
			for ; werr == nil && sent < c.frames; sent++ {
				werr = r.fr.WriteContinuation(1, false, c.frag)
			}
			if werr == nil {
				werr = r.bw.Flush()
			}
			<-done
			o := res.Load()
			if o.goAway == nil && !o.closed {
				t.Fatalf("%d CONTINUATION frames sent (write error %v), the connection is still open", sent, werr)
			}
			if o.goAway != nil {
				t.Logf("GOAWAY %v; %d of %d frames written meanwhile", o.goAway.ErrCode, sent, c.frames)
				if o.goAway.ErrCode != http2.ErrCodeEnhanceYourCalm && o.goAway.ErrCode != http2.ErrCodeProtocol {
					t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM or PROTOCOL_ERROR", o.goAway.ErrCode)
				}
			}
			_ = r.c.Close()
			b.stillServes(t)
		})
	}
	if n := b.up.Hits.Load(); n != 4 {
		t.Fatalf("the upstream saw %d requests, want 4 from the checks only", n)
	}
}

// A client that stops reading is cut after limits.write_timeout (300ms
// here), whether it keeps its TCP receive window shut (the socket write
// blocks) or its HTTP/2 flow-control window (the stream's writes block);
// and nothing the connection started is left running.
func TestH2BadInputSlowReader(t *testing.T) {
	b := startH2Bad(t, 8<<20)
	b.stillServes(t) // warm: pools and cleaners exist before the snapshot
	leaks := append([]goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	}, h2LeakIgnores...)

	t.Run("TCP window shut", func(t *testing.T) {
		d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = setRcvBuf(fd, 4096) })
		}}
		r := dialRawH2(t, b.addr, d, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		r.must(r.fr.WriteWindowUpdate(0, 1<<31-1-65535))
		r.must(r.headers(1, "/big", true))
		r.flush()
		// Never read: the 8 MiB answer fills the socket buffers and the
		// server's writes stall: after write_timeout the stream is reset (or,
		// when a frame write itself is stuck, the connection closed), and the
		// connection, idle then, ends at idle_timeout (2s). Reading now would
		// let the writes progress, so wait for the server side of the
		// connection to end, then read what was buffered up to the hang-up.
		if !pollUntil(15*time.Second, h2ServerGone) {
			buf := make([]byte, 1<<20)
			t.Fatalf("the server kept serving a client that does not read:\n%s", buf[:runtime.Stack(buf, true)])
		}
		cut := false
		deadline := time.Now().Add(15 * time.Second)
		buf := make([]byte, 64<<10)
		for !cut && time.Now().Before(deadline) {
			_ = r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := r.c.Read(buf); err != nil {
				var ne net.Error
				cut = !(errors.As(err, &ne) && ne.Timeout())
			}
		}
		if !cut {
			t.Fatal("the server kept the connection of a client that does not read")
		}
		b.stillServes(t)
	})

	t.Run("flow-control window shut", func(t *testing.T) {
		r := dialRawH2(t, b.addr, nil, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		r.must(r.headers(1, "/big", true))
		r.must(r.headers(3, "/upstream", true))
		r.flush()
		// Headers come (they are not flow-controlled); no DATA can. The
		// streams are reset or the connection closed: not kept forever.
		o := r.readUntil(15*time.Second, func(o *outcome) bool {
			return goneOrGoAway(o) || (o.rsts[1] != 0 && o.rsts[3] != 0)
		})
		if !goneOrGoAway(o) && (o.rsts[1] == 0 || o.rsts[3] == 0) {
			t.Fatalf("streams stalled on a shut window were kept: %+v", o)
		}
		_ = r.c.Close()
		b.stillServes(t)
	})

	if err := goleak.Find(leaks...); err != nil {
		t.Fatalf("goroutines left by the cut connections: %v", err)
	}
}

// pollUntil polls cond every 20ms for at most max.
func pollUntil(max time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// h2ServerGone reports whether no HTTP/2 server connection is being served
// in this process (the tests run one proxy at a time).
func h2ServerGone() bool {
	buf := make([]byte, 8<<20)
	n := runtime.Stack(buf, true)
	return !bytes.Contains(buf[:n], []byte("http2.(*serverConn).serve(")) && // x/net's server
		!bytes.Contains(buf[:n], []byte("listener.(*h2conn).serve(")) // weft's
}

// h2LeakIgnores are goroutines that outlive a request by design.
var h2LeakIgnores = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),       // idle, no connection
	goleak.IgnoreTopFunction("github.com/weftmesh/weft/proxy/listener.(*warmStacks).work"), // idle HTTP/2 stream worker
	goleak.IgnoreTopFunction("github.com/weftmesh/weft/proxy/listener.(*h2workers).work"),  // the same, weft's server
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}
