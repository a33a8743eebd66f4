package h2client

import (
	"bytes"
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

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// peer is the server end of one HTTP/2 connection, written and read frame
// by frame by the test: it sees exactly what the client sends.
type peer struct {
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

// rawServer accepts connections on loopback and hands each to the test
// once the client's preface is read. The decoder of the client's header
// blocks has a dynamic table of tableSize bytes.
func rawServer(t *testing.T, tableSize uint32) (string, <-chan *peer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peers := make(chan *peer, 4)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			_ = nc.SetDeadline(time.Now().Add(wait))
			pre := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(nc, pre); err != nil || string(pre) != http2.ClientPreface {
				_ = nc.Close()
				continue
			}
			p := &peer{nc: nc, fr: http2.NewFramer(nc, nc)}
			p.fr.ReadMetaHeaders = hpack.NewDecoder(tableSize, nil)
			p.henc = hpack.NewEncoder(&p.hbuf)
			peers <- p
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), peers
}

// next is the next peer, within the generous deadline.
func next(t *testing.T, peers <-chan *peer) *peer {
	t.Helper()
	select {
	case p := <-peers:
		return p
	case <-time.After(wait):
		t.Fatal("the client never connected")
		return nil
	}
}

// read returns the client's next frame (the connection's deadline, set
// at accept, bounds it).
func (p *peer) read(t *testing.T) http2.Frame {
	t.Helper()
	f, err := p.fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the client's frames: %v", err)
	}
	return f
}

// readUntil reads frames, skipping the client's SETTINGS ACKs, WINDOW_UPDATEs
// and PINGs, until one satisfying keep.
func (p *peer) readUntil(t *testing.T, what string, keep func(http2.Frame) bool) http2.Frame {
	t.Helper()
	for {
		f := p.read(t)
		if keep(f) {
			return f
		}
		switch f.(type) {
		case *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.PingFrame:
			continue
		}
		t.Fatalf("waiting for %s, the client sent %v", what, f)
	}
}

// respond sends a response's HEADERS (:status 200), ending the stream.
func (p *peer) respond(t *testing.T, id uint32) {
	t.Helper()
	p.hbuf.Reset()
	_ = p.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
		t.Fatal(err)
	}
}

// result is a request's outcome, from the goroutine that sent it.
type result struct {
	resp *http.Response
	err  error
}

// send starts req on tr in a goroutine; its result arrives on the channel.
func send(tr *Transport, method, body string, hdr ...string) <-chan result {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, "http://weft.test/x", r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	out := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		out <- result{resp, err}
	}()
	return out
}

func await(t *testing.T, res <-chan result) result {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(wait):
		t.Fatal("the request never ended")
		return result{}
	}
}

// The client opens with its SETTINGS (push off, its stream window, 1 MiB
// frames, its header list bound) and then widens the connection's window
// from HTTP/2's 65535 to ConnWindow, in one WINDOW_UPDATE; with
// ConnWindow 65535 there is nothing to widen, and its first request comes
// next.
func TestOpeningFrames(t *testing.T) {
	for _, tt := range []struct {
		stream, conn int32
		update       uint32
	}{{1 << 20, 8 << 20, 8<<20 - 65535}, {65536, 65536, 1}, {65535, 65535, 0}, {1000, 65535, 0}} {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{StreamWindow: tt.stream, ConnWindow: tt.conn, MaxResponseHeaderBytes: 64 << 10})
		res := send(tr, "GET", "")
		p := next(t, peers)
		sf, ok := p.read(t).(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			t.Fatalf("windows %d/%d: the client's first frame is not its SETTINGS", tt.stream, tt.conn)
		}
		got := map[http2.SettingID]uint32{}
		_ = sf.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
		want := map[http2.SettingID]uint32{http2.SettingEnablePush: 0, http2.SettingInitialWindowSize: uint32(tt.stream),
			http2.SettingMaxFrameSize: 1 << 20, http2.SettingMaxHeaderListSize: 64 << 10}
		if len(got) != len(want) {
			t.Errorf("windows %d/%d: SETTINGS %v, want %v", tt.stream, tt.conn, got, want)
		}
		for id, v := range want {
			if got[id] != v {
				t.Errorf("windows %d/%d: SETTINGS %v = %d, want %d", tt.stream, tt.conn, id, got[id], v)
			}
		}
		if err := p.fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		f := p.read(t)
		if tt.update > 0 {
			wu, ok := f.(*http2.WindowUpdateFrame)
			if !ok || wu.StreamID != 0 || wu.Increment != tt.update {
				t.Fatalf("windows %d/%d: after SETTINGS %v, want the connection's WINDOW_UPDATE of %d", tt.stream, tt.conn, f, tt.update)
			}
			f = p.read(t)
		}
		if _, ok := f.(*http2.SettingsFrame); ok { // the ACK of ours
			f = p.read(t)
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			t.Fatalf("windows %d/%d: %v where the request's HEADERS belong", tt.stream, tt.conn, f)
		}
		p.respond(t, h.StreamID)
		if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
			t.Fatalf("windows %d/%d: %+v", tt.stream, tt.conn, r)
		}
	}
}

// The server's SETTINGS_INITIAL_WINDOW_SIZE bounds what a request body
// may send before a WINDOW_UPDATE, and a change of it mid-stream moves an
// open stream's window by the difference (RFC 9113 section 6.9.2): the
// client never sends past what the server allowed. The largest legal
// value (2^31-1) is taken, one more is a FLOW_CONTROL_ERROR.
func TestServerInitialWindow(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	body := strings.Repeat("b", 100)
	res := send(tr, "POST", body)
	p := next(t, peers)
	if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}); err != nil {
		t.Fatal(err)
	}
	var got int
	var id uint32
	readData := func(allowed int, what string) {
		t.Helper()
		for got < allowed {
			switch f := p.read(t).(type) {
			case *http2.MetaHeadersFrame:
				id = f.StreamID
			case *http2.DataFrame:
				got += len(f.Data())
				if got > allowed {
					t.Fatalf("%s: the client sent %d body bytes, the server allowed %d", what, got, allowed)
				}
			case *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.PingFrame:
			default:
				t.Fatalf("waiting for %s, the client sent %v", what, f)
			}
		}
	}
	readData(10, "the first 10 bytes")
	// 10 → 30: 20 more for the open stream, not 30 (nor 40).
	if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 30}); err != nil {
		t.Fatal(err)
	}
	readData(30, "20 bytes more after the window grew to 30")
	if err := p.fr.WriteWindowUpdate(id, 70); err != nil {
		t.Fatal(err)
	}
	readData(100, "the rest after a WINDOW_UPDATE")
	p.respond(t, id)
	if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("%+v", r)
	}

	for _, tt := range []struct {
		val uint32
		ok  bool
	}{{1<<31 - 1, true}, {1 << 31, false}} {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		res := send(tr, "GET", "")
		p := next(t, peers)
		if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: tt.val}); err != nil {
			t.Fatal(err)
		}
		if !tt.ok {
			ga := p.readUntil(t, "GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
			if ga.ErrCode != http2.ErrCodeFlowControl {
				t.Errorf("initial window %d: GOAWAY %v, want FLOW_CONTROL_ERROR", tt.val, ga.ErrCode)
			}
			if r := await(t, res); r.err == nil {
				t.Errorf("initial window %d: the request went through", tt.val)
			}
			continue
		}
		h := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
		p.respond(t, h.Header().StreamID)
		if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
			t.Fatalf("initial window %d: %+v", tt.val, r)
		}
	}
}

// A server that keeps no HPACK dynamic table (SETTINGS_HEADER_TABLE_SIZE
// 0) gets header blocks that do not refer to one: its decoder, with no
// table, reads every request's fields.
func TestServerHeaderTableSize(t *testing.T) {
	addr, peers := rawServer(t, 0)
	tr, _ := newTransport(t, addr, Config{})
	p := (*peer)(nil)
	for i := 0; i < 3; i++ {
		res := send(tr, "GET", "", "X-Repeated", "the same value every time")
		if p == nil {
			p = next(t, peers)
			if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}); err != nil {
				t.Fatal(err)
			}
		}
		f, err := p.fr.ReadFrame()
		for err == nil {
			if _, ok := f.(*http2.MetaHeadersFrame); ok {
				break
			}
			f, err = p.fr.ReadFrame()
		}
		if err != nil {
			t.Fatalf("request %d: the server cannot decode the client's frames: %v", i, err)
		}
		h := f.(*http2.MetaHeadersFrame)
		if v := h.PseudoValue("method"); v != "GET" {
			t.Fatalf("request %d: :method %q", i, v)
		}
		var got string
		for _, hf := range h.RegularFields() {
			if hf.Name == "x-repeated" {
				got = hf.Value
			}
		}
		if got != "the same value every time" {
			t.Fatalf("request %d: x-repeated %q", i, got)
		}
		p.respond(t, h.StreamID)
		if r := await(t, res); r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
	}
}

// WINDOW_UPDATEs may bring a window to 2^31-1 exactly; one byte more is a
// FLOW_CONTROL_ERROR: of the connection (GOAWAY) for its window, of the
// stream alone (RST_STREAM) for a stream's.
func TestWindowUpdateBounds(t *testing.T) {
	const max = 1<<31 - 1
	t.Run("connection", func(t *testing.T) {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		res := send(tr, "GET", "")
		p := next(t, peers)
		if err := p.fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		if err := p.fr.WriteWindowUpdate(0, max-65535); err != nil {
			t.Fatal(err)
		}
		h := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
		p.respond(t, h.Header().StreamID)
		if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
			t.Fatalf("with the connection window at 2^31-1: %+v", r)
		}
		if err := p.fr.WriteWindowUpdate(0, 1); err != nil {
			t.Fatal(err)
		}
		ga := p.readUntil(t, "GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
		if ga.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("GOAWAY %v, want FLOW_CONTROL_ERROR", ga.ErrCode)
		}
	})
	t.Run("stream", func(t *testing.T) {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		res := send(tr, "POST", strings.Repeat("b", 100))
		p := next(t, peers)
		if err := p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
			t.Fatal(err)
		}
		id := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
		if err := p.fr.WriteWindowUpdate(id, max); err != nil {
			t.Fatal(err)
		}
		for got, end := 0, false; !end; {
			d := p.readUntil(t, "the body", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
			got += len(d.Data())
			if end = d.StreamEnded(); end && got != 100 {
				t.Fatalf("the body ended after %d bytes, want 100", got)
			}
		}
		if err := p.fr.WriteWindowUpdate(id, 101); err != nil {
			t.Fatal(err)
		}
		rst := p.readUntil(t, "RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
		if rst.StreamID != id || rst.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("RST_STREAM %v on stream %d, want FLOW_CONTROL_ERROR on %d", rst.ErrCode, rst.StreamID, id)
		}
		if r := await(t, res); r.err == nil {
			t.Fatal("the request whose stream window overflowed went through")
		}
	})
}

// sync sends a PING and returns the client's frames read before its ACK:
// everything the client wrote before it read the PING.
func (p *peer) sync(t *testing.T) []http2.Frame {
	t.Helper()
	if err := p.fr.WritePing(false, [8]byte{'s', 'y', 'n', 'c'}); err != nil {
		t.Fatal(err)
	}
	var before []http2.Frame
	for {
		f := p.read(t)
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() && pf.Data == [8]byte{'s', 'y', 'n', 'c'} {
			return before
		}
		before = append(before, f)
	}
}

// The connection's receive window is credited back, padding included (at
// once) and data as the body is read, in one WINDOW_UPDATE once half the
// window (32767 of 65535) is used: a response of 32766 flow-controlled
// bytes gets none, one of 32767 gets exactly 32767.
func TestReceiveWindowCredit(t *testing.T) {
	for _, total := range []int{32766, 32767} {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{StreamWindow: 65535, ConnWindow: 65535})
		res := send(tr, "GET", "")
		p := next(t, peers)
		if err := p.fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		id := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
		p.hbuf.Reset()
		_ = p.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		// Frames of 256 flow-controlled bytes: the pad length byte, 100
		// bytes of data, 155 of padding; the last one makes up the total.
		data := bytes.Repeat([]byte{'d'}, 100)
		for left := total; left > 0; {
			n := min(left, 256)
			left -= n
			if err := p.fr.WriteDataPadded(id, left == 0, data, make([]byte, n-1-len(data))); err != nil {
				t.Fatal(err)
			}
		}
		if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
			t.Fatalf("total %d: %+v", total, r)
		}
		var updates []uint32
		for _, f := range p.sync(t) {
			if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == 0 {
				updates = append(updates, wu.Increment)
			}
		}
		want := []uint32(nil)
		if total >= 32767 {
			want = []uint32{uint32(total)}
		}
		if fmt.Sprint(updates) != fmt.Sprint(want) {
			t.Errorf("%d flow-controlled bytes read: connection WINDOW_UPDATEs %v, want %v", total, updates, want)
		}
	}
}

// GOAWAY: streams up to its last stream ID finish on the connection; the
// ones after it were not processed and go again on a new connection; a
// connection with no stream left closes.
func TestGoAwayLastStream(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, dials := newTransport(t, addr, Config{})
	first := send(tr, "GET", "")
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	id1 := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
	second := send(tr, "GET", "")
	id2 := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
	if err := p.fr.WriteGoAway(id1, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	// The second request goes again, on a new connection.
	p2 := next(t, peers)
	if err := p2.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	h := p2.readUntil(t, "the retried HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
	p2.respond(t, h.Header().StreamID)
	if r := await(t, second); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("stream %d, after GOAWAY's last stream %d: %+v", id2, id1, r)
	}
	// The first finishes where it is, then its connection closes.
	p.respond(t, id1)
	if r := await(t, first); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("stream %d, GOAWAY's last stream: %+v", id1, r)
	}
	for {
		if _, err := p.fr.ReadFrame(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("the connection that went away did not close: %v", err)
			}
			break
		}
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

// A stream's receive window is credited back as its body is read, in one
// WINDOW_UPDATE once half of it (32767 of 65535) is read.
func TestStreamReceiveWindowCredit(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{StreamWindow: 65535, ConnWindow: 1 << 20})
	res := send(tr, "GET", "")
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	id := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
	p.hbuf.Reset()
	_ = p.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for left := 32767; left > 0; left -= 10000 {
		if err := p.fr.WriteData(id, false, bytes.Repeat([]byte{'d'}, min(left, 10000))); err != nil {
			t.Fatal(err)
		}
	}
	// The client reads the body at its own pace: wait for the update
	// (the connection's deadline bounds the wait).
	var updates []uint32
	for len(updates) == 0 {
		for _, f := range p.sync(t) {
			if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == id {
				updates = append(updates, wu.Increment)
			}
		}
	}
	if len(updates) != 1 || updates[0] != 32767 {
		t.Fatalf("stream WINDOW_UPDATEs %v, want [32767]", updates)
	}
	if err := p.fr.WriteData(id, true, nil); err != nil {
		t.Fatal(err)
	}
	if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("%+v", r)
	}
}

// DATA nobody will read (its stream's body was closed) is still credited
// to the connection: once half its window came that way, the connection's
// WINDOW_UPDATE says so.
func TestUnreadDataCreditsTheConnection(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{StreamWindow: 65535, ConnWindow: 65535})
	got := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://weft.test/x", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			err = resp.Body.Close() // before any of it is read
		}
		got <- err
	}()
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	id := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
	p.hbuf.Reset()
	_ = p.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("the request never returned")
	}
	// The body is closed: what comes now is read by no one.
	for left := 32767; left > 0; left -= 10000 {
		if err := p.fr.WriteData(id, false, bytes.Repeat([]byte{'d'}, min(left, 10000))); err != nil {
			t.Fatal(err)
		}
	}
	var updates []uint32
	for _, f := range p.sync(t) {
		if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == 0 {
			updates = append(updates, wu.Increment)
		}
	}
	if len(updates) != 1 || updates[0] != 32767 {
		t.Fatalf("connection WINDOW_UPDATEs %v after 32767 unread bytes, want [32767]", updates)
	}
}

// A request header block larger than the server's frame size goes as
// HEADERS and CONTINUATION frames, whole.
func TestLargeHeaderBlockContinues(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	big := strings.Repeat("v", 40000) // past 16384, the server's frame size
	res := send(tr, "GET", "", "X-Big", big)
	p := next(t, peers)
	p.fr.ReadMetaHeaders.SetMaxStringLength(1 << 20)
	p.fr.MaxHeaderListSize = 1 << 20
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	h := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if got := h.Header().Length; got > 16384 {
		t.Fatalf("a HEADERS frame of %d bytes, past the server's 16384", got)
	}
	var v string
	for _, f := range h.RegularFields() {
		if f.Name == "x-big" {
			v = f.Value
		}
	}
	if v != big {
		t.Fatalf("x-big arrived with %d bytes, want %d", len(v), len(big))
	}
	p.respond(t, h.StreamID)
	if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("%+v", r)
	}
}

// A stream the server refused (REFUSED_STREAM: not processed) after its
// body went out goes again with a fresh body from GetBody.
func TestRefusedStreamRetriedWithGetBody(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	res := send(tr, "POST", "the whole body")
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Each try: its HEADERS, then its body to END_STREAM.
	try := func() (uint32, string) {
		t.Helper()
		id := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).Header().StreamID
		var b []byte
		for {
			d := p.readUntil(t, "the body", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
			b = append(b, d.Data()...)
			if d.StreamEnded() {
				return id, string(b)
			}
		}
	}
	id1, b1 := try()
	if err := p.fr.WriteRSTStream(id1, http2.ErrCodeRefusedStream); err != nil {
		t.Fatal(err)
	}
	id2, b2 := try()
	if b1 != "the whole body" || b2 != "the whole body" || id2 == id1 {
		t.Fatalf("stream %d sent %q, then stream %d %q: want the whole body twice", id1, b1, id2, b2)
	}
	p.respond(t, id2)
	if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("the retried request: %+v", r)
	}
}

// A request whose Host is not a valid authority fails alone, before its
// HEADERS: its URL's host is not checked in its place, and the connection
// serves the next request.
func TestInvalidHostRefused(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	req, _ := http.NewRequest("GET", "http://weft.test/x", nil)
	req.Host = "bad host"
	bad := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		bad <- err
	}()
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bad:
		if err == nil || !strings.Contains(err.Error(), "invalid authority") {
			t.Fatalf("Host %q: %v, want an invalid authority", req.Host, err)
		}
	case <-time.After(wait):
		t.Fatal("the request never returned")
	}
	res := send(tr, "GET", "")
	h := p.readUntil(t, "HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if a := h.PseudoValue("authority"); a != "weft.test" {
		t.Fatalf("the next request's :authority is %q", a)
	}
	p.respond(t, h.StreamID)
	if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("the request after: %+v", r)
	}
}

// What a request's HEADERS carry: the pseudo-headers (:authority from
// Host, else the URL's host; :scheme http when the URL has none), the
// fields from the context and then req.Header's. A request with an
// invalid field sends nothing at all.
func TestRequestHeaderBlock(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	type sent struct{ pseudo, fields string }
	var p *peer
	roundTrip := func(req *http.Request) (sent, error) {
		t.Helper()
		errc := make(chan error, 1)
		go func() {
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		if p == nil {
			p = next(t, peers)
			if err := p.fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
		}
		if req.Header.Get("X-Expect-Error") != "" {
			select {
			case err := <-errc:
				return sent{}, err
			case <-time.After(wait):
				t.Fatal("a request with an invalid field went out")
			}
		}
		// The last request's body may still be coming, and its stream
		// be reset once its answer ended first.
		var h http2.Frame
		for {
			h = p.read(t)
			if _, ok := h.(*http2.MetaHeadersFrame); ok {
				break
			}
			switch h.(type) {
			case *http2.DataFrame, *http2.RSTStreamFrame, *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.PingFrame:
				continue
			}
			t.Fatalf("waiting for HEADERS, the client sent %v", h)
		}
		var s sent
		for _, f := range h.(*http2.MetaHeadersFrame).Fields {
			if f.IsPseudo() {
				s.pseudo += f.Name + "=" + f.Value + " "
			} else {
				s.fields += f.Name + "=" + f.Value + " "
			}
		}
		p.respond(t, h.Header().StreamID)
		return s, <-errc
	}
	a, _ := http.NewRequestWithContext(WithFields(context.Background(), byteFields{{"X-Field", "f"}, {"AZ-az", "z"}}), "GET", "http://weft.test/x?q=1", nil)
	a.Host = "other.test"
	a.Header.Set("X-Header", "h")
	if s, err := roundTrip(a); err != nil || s.pseudo != ":method=GET :scheme=http :authority=other.test :path=/x?q=1 " || s.fields != "x-field=f az-az=z x-header=h " {
		t.Fatalf("with Host and fields: %+v %v", s, err)
	}
	b, _ := http.NewRequest("GET", "http://weft.test/y", nil)
	b.Host, b.URL.Scheme = "", ""
	if s, err := roundTrip(b); err != nil || s.pseudo != ":method=GET :scheme=http :authority=weft.test :path=/y " {
		t.Fatalf("with no Host nor scheme: %+v %v", s, err)
	}
	c, _ := http.NewRequestWithContext(WithFields(context.Background(), byteFields{{"X-Ok", "fine"}, {"X-Bad", "line\nbreak"}}), "GET", "http://weft.test/z", nil)
	c.Header.Set("X-Expect-Error", "1")
	if _, err := roundTrip(c); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("an invalid field: %v, want it refused", err)
	}
	// content-length: the body's when known, none when unknown (chunks
	// of DATA), 0 for an empty body that is still a body.
	for _, tt := range []struct {
		cl   int64
		want string
	}{{5, "content-length=5 "}, {-1, ""}, {0, "content-length=0 "}} {
		r, _ := http.NewRequest("POST", "http://weft.test/body", io.NopCloser(strings.NewReader("hello"[:max(tt.cl, 0)])))
		r.ContentLength = tt.cl
		s, err := roundTrip(r)
		if err != nil || s.fields != tt.want {
			t.Fatalf("ContentLength %d: fields %q, want %q (%v)", tt.cl, s.fields, tt.want, err)
		}
	}
	d, _ := http.NewRequest("GET", "http://weft.test/after", nil)
	if s, err := roundTrip(d); err != nil || !strings.Contains(s.pseudo, ":path=/after ") {
		t.Fatalf("the HEADERS after a refused request: %+v %v (the refused one was sent?)", s, err)
	}
}
