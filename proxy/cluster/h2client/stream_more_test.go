package h2client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headers sends a HEADERS frame of name/value pairs on stream id.
func (p *peer) headers(t *testing.T, id uint32, end bool, kv ...string) {
	t.Helper()
	p.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = p.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true, EndStream: end}); err != nil {
		t.Fatal(err)
	}
}

// started is a connection whose server SETTINGS are sent, and the
// stream ID of the request res carries.
func started(t *testing.T, tr *Transport, peers <-chan *peer) (*peer, uint32) {
	t.Helper()
	p := next(t, peers)
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	h := p.readUntil(t, "the request's HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
	return p, h.Header().StreamID
}

// roundTrip starts a GET on tr and returns its response (body unread)
// or error on the channel.
func roundTrip(tr *Transport, ctx context.Context) <-chan result {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://weft.test/x", nil)
	out := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		out <- result{resp, err}
	}()
	return out
}

// The response's :status: interim answers (100, 103) are passed over for
// the final one; 101, an interim answer ending the stream, and values
// that are not three digits from 100 are errors. Status spells the code
// and its text.
func TestResponseStatus(t *testing.T) {
	for _, tt := range []struct {
		interim  []string // statuses sent first, without END_STREAM
		status   string
		end      bool // END_STREAM on the last HEADERS
		want     string
		wantCode int
	}{
		{nil, "200", true, "200 OK", 200},
		{nil, "404", true, "404 Not Found", 404},
		{[]string{"100"}, "200", true, "200 OK", 200},
		{[]string{"100", "103"}, "204", true, "204 No Content", 204},
		{nil, "101", false, "", 0},
		{[]string{"100"}, "103", true, "", 0},
		{nil, "099", true, "", 0},
		{nil, "1000", true, "", 0},
		{nil, "20", true, "", 0},
		{nil, "abc", true, "", 0},
	} {
		name := strings.Join(append(tt.interim, tt.status), ",")
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		res := roundTrip(tr, context.Background())
		p, id := started(t, tr, peers)
		for _, st := range tt.interim {
			p.headers(t, id, false, ":status", st)
		}
		p.headers(t, id, tt.end, ":status", tt.status)
		r := await(t, res)
		if tt.want == "" {
			if r.err == nil {
				r.resp.Body.Close()
				t.Errorf("%s: answered %s, want an error", name, r.resp.Status)
				continue
			}
			// The stream is reset as a protocol error.
			rst := p.readUntil(t, "RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
			if rst.StreamID != id || rst.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("%s: %v, want RST_STREAM PROTOCOL_ERROR of stream %d", name, rst, id)
			}
			continue
		}
		if r.err != nil {
			t.Errorf("%s: %v", name, r.err)
			continue
		}
		r.resp.Body.Close()
		if r.resp.Status != tt.want || r.resp.StatusCode != tt.wantCode {
			t.Errorf("%s: Status %q, StatusCode %d, want %q, %d", name, r.resp.Status, r.resp.StatusCode, tt.want, tt.wantCode)
		}
	}
}

// ContentLength is the response's content-length when it has exactly
// one that is a number from 0, 0 for headers that end the stream without
// one, and -1 (unknown) otherwise.
func TestResponseContentLength(t *testing.T) {
	for _, tt := range []struct {
		name string
		kv   []string
		end  bool
		want int64
	}{
		{"one", []string{"content-length", "5"}, false, 5},
		{"zero", []string{"content-length", "0"}, false, 0},
		{"none", nil, false, -1},
		{"none, stream ended", nil, true, 0},
		{"two", []string{"content-length", "5", "content-length", "5"}, false, -1},
		{"negative", []string{"content-length", "-1"}, false, -1},
		{"not a number", []string{"content-length", "five"}, false, -1},
	} {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		res := roundTrip(tr, context.Background())
		p, id := started(t, tr, peers)
		p.headers(t, id, tt.end, append([]string{":status", "200"}, tt.kv...)...)
		r := await(t, res)
		if r.err != nil {
			t.Errorf("%s: %v", tt.name, r.err)
			continue
		}
		if r.resp.ContentLength != tt.want {
			t.Errorf("%s: ContentLength %d, want %d", tt.name, r.resp.ContentLength, tt.want)
		}
		r.resp.Body.Close()
	}
}

// stallBody is a request body whose Read waits until it is closed;
// reading is closed at the first Read.
type stallBody struct {
	once, first     sync.Once
	reading, closed chan struct{}
}

func newStallBody() *stallBody {
	return &stallBody{reading: make(chan struct{}), closed: make(chan struct{})}
}

func (b *stallBody) Read([]byte) (int, error) {
	b.first.Do(func() { close(b.reading) })
	<-b.closed
	return 0, errors.New("stallBody: closed")
}

func (b *stallBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// A server that answered in full and then resets the stream with
// NO_ERROR wants no more of the request body (RFC 9113 section 8.1): the
// answer stands, read to its EOF without error, and the request body
// the client is reading is closed.
func TestResetNoErrorAfterAnswer(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	body := newStallBody()
	t.Cleanup(func() { _ = body.Close() })
	req, _ := http.NewRequest("POST", "http://weft.test/x", body)
	res := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		res <- result{resp, err}
	}()
	p, id := started(t, tr, peers)
	// The client's body writer is reading the body (waiting in Read)
	// when the answer comes.
	select {
	case <-body.reading:
	case <-time.After(wait):
		t.Fatal("the request body was never read")
	}
	p.headers(t, id, false, ":status", "200")
	if err := p.fr.WriteData(id, true, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := p.fr.WriteRSTStream(id, http2.ErrCodeNo); err != nil {
		t.Fatal(err)
	}
	p.sync(t) // the client has read the RST_STREAM
	r := await(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	b, err := io.ReadAll(r.resp.Body)
	r.resp.Body.Close()
	if err != nil || string(b) != "hello" {
		t.Fatalf("body %q, %v; want hello and EOF", b, err)
	}
	select {
	case <-body.closed:
	case <-time.After(wait):
		t.Fatal("the request body was not closed")
	}
}

// A request whose context is cancelled with a cause fails with both the
// context's error and the cause; without a cause, with the context's
// error alone.
func TestCancelCause(t *testing.T) {
	cause := errors.New("the caller went away")
	for _, withCause := range []bool{true, false} {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		ctx, cancel := context.WithCancelCause(context.Background())
		res := roundTrip(tr, ctx)
		p, id := started(t, tr, peers)
		if withCause {
			cancel(cause)
		} else {
			cancel(nil)
		}
		rst := p.readUntil(t, "RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
		if rst.StreamID != id || rst.ErrCode != http2.ErrCodeCancel {
			t.Fatalf("%v, want RST_STREAM CANCEL of stream %d", rst, id)
		}
		r := await(t, res)
		switch {
		case r.err == nil:
			r.resp.Body.Close()
			t.Fatalf("cause %v: answered %s", withCause, r.resp.Status)
		case !errors.Is(r.err, context.Canceled):
			t.Fatalf("cause %v: %v, want context.Canceled", withCause, r.err)
		case withCause && !errors.Is(r.err, cause):
			t.Fatalf("%v, want the cause too", r.err)
		case !withCause && r.err.Error() != context.Canceled.Error():
			t.Fatalf("%q, want %q alone", r.err, context.Canceled)
		}
	}
}

// Request trailers go in one HEADERS frame: a block of exactly the
// server's frame size (16384 by default) goes, one byte more fails the
// request and resets its stream.
func TestRequestTrailersOneFrame(t *testing.T) {
	// A value of '#' (a 12-bit Huffman code) is sent as it is, so the
	// block grows by one byte per byte of the value; find the length
	// whose block is exactly 16384 bytes.
	const frame = 16384
	blockLen := func(v string) int {
		var b bytes.Buffer
		_ = hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: "x-big", Value: v})
		return b.Len()
	}
	n := frame - 16
	for blockLen(strings.Repeat("#", n)) < frame {
		n++
	}
	if blockLen(strings.Repeat("#", n)) != frame || blockLen(strings.Repeat("#", n+1)) != frame+1 {
		t.Fatalf("no value length gives a block of exactly %d bytes", frame)
	}
	for _, size := range []int{n, n + 1} {
		addr, peers := rawServer(t, 4096)
		tr, _ := newTransport(t, addr, Config{})
		req, _ := http.NewRequest("POST", "http://weft.test/x", strings.NewReader("x"))
		req.Trailer = http.Header{"X-Big": {strings.Repeat("#", size)}}
		res := make(chan result, 1)
		go func() {
			resp, err := tr.RoundTrip(req)
			res <- result{resp, err}
		}()
		p, id := started(t, tr, peers)
		if d := p.readUntil(t, "the body", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame); string(d.Data()) != "x" || d.StreamEnded() {
			t.Fatalf("trailer of %d bytes: DATA %q, END_STREAM %v; want x, and trailers to come", size, d.Data(), d.StreamEnded())
		}
		f := p.readUntil(t, "the trailers or RST_STREAM", func(f http2.Frame) bool {
			switch f.(type) {
			case *http2.MetaHeadersFrame, *http2.RSTStreamFrame:
				return true
			}
			return false
		})
		if size == n {
			h, ok := f.(*http2.MetaHeadersFrame)
			if !ok || h.Header().Length != frame || !h.StreamEnded() || h.PseudoValue("status") != "" || len(h.Fields) != 1 || h.Fields[0].Value != req.Trailer.Get("X-Big") {
				t.Fatalf("a block of %d bytes: %v, want the trailers in one HEADERS frame ending the stream", frame, f)
			}
			p.respond(t, id)
			r := await(t, res)
			if r.err != nil {
				t.Fatalf("a block of %d bytes: %v", frame, r.err)
			}
			r.resp.Body.Close()
			continue
		}
		if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.StreamID != id || rst.ErrCode != http2.ErrCodeCancel {
			t.Fatalf("a block of %d bytes: %v, want RST_STREAM CANCEL of stream %d", frame+1, f, id)
		}
		if r := await(t, res); r.err == nil || !strings.Contains(r.err.Error(), "larger than one frame") {
			t.Fatalf("a block of %d bytes: %+v, want the trailers refused", frame+1, r)
		}
	}
}

// A response body closed with data buffered and partly read credits the
// connection with what was never read: with 32767 bytes buffered (half
// of a 65535 window) and 100 read, Close returns the other 32667, and
// the connection's WINDOW_UPDATE is exactly 32767.
func TestCloseCreditsBufferedUnreadData(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{StreamWindow: 65535, ConnWindow: 65535})
	res := roundTrip(tr, context.Background())
	p, id := started(t, tr, peers)
	p.headers(t, id, false, ":status", "200")
	r := await(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for left := 32767; left > 0; left -= 10000 {
		if err := p.fr.WriteData(id, false, bytes.Repeat([]byte{'d'}, min(left, 10000))); err != nil {
			t.Fatal(err)
		}
	}
	p.sync(t) // the client has buffered all of it
	if _, err := io.ReadFull(r.resp.Body, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := r.resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	var updates []uint32
	for _, f := range p.sync(t) {
		if wu, ok := f.(*http2.WindowUpdateFrame); ok && wu.StreamID == 0 {
			updates = append(updates, wu.Increment)
		}
	}
	if len(updates) != 1 || updates[0] != 32767 {
		t.Fatalf("connection WINDOW_UPDATEs %v after 100 of 32767 buffered bytes were read and the body closed, want [32767]", updates)
	}
}
