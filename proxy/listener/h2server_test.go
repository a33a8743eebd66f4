package listener

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/config"
)

// weft's HTTP/2 server (h2server.go) against a client speaking frames by
// hand, on a real listener.

// startH2 serves h as the HTTP/2 handler of a new listener.
func startH2(t *testing.T, s config.HTTP2, lim config.Limits, h http.Handler) *Listener {
	t.Helper()
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0", Limits: lim,
		Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("h1") }, H2: &H2Options{Handler: h, Settings: s}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
	})
	return l
}

// frameClient is an HTTP/2 client speaking frames by hand.
type frameClient struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

// dialFrames connects with prior knowledge, sends settings, and reads the
// server's SETTINGS (acknowledged).
func dialFrames(t *testing.T, addr string, settings ...http2.Setting) *frameClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	fc := &frameClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	fc.fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	fc.enc = hpack.NewEncoder(&fc.hbuf)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fc.must(fc.fr.WriteSettings(settings...))
	for {
		f := fc.read()
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			fc.must(fc.fr.WriteSettingsAck())
			return fc
		}
	}
}

func (fc *frameClient) must(err error) {
	fc.t.Helper()
	if err != nil {
		fc.t.Fatal(err)
	}
}

func (fc *frameClient) read() http2.Frame {
	fc.t.Helper()
	f, err := fc.fr.ReadFrame()
	if err != nil {
		fc.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// headers opens stream id: method and path, then header pairs.
func (fc *frameClient) headers(id uint32, method, path string, end bool, extra ...string) {
	fc.t.Helper()
	fc.hbuf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "weft.test"}, {Name: ":path", Value: path}} {
		_ = fc.enc.WriteField(f)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		_ = fc.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	fc.must(fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: fc.hbuf.Bytes(), EndStream: end, EndHeaders: true}))
}

// answer is what a stream got.
type answer struct {
	status string
	body   []byte
	rst    http2.ErrCode
	reset  bool
	ended  bool
}

// await reads frames until stream id ends (END_STREAM or RST_STREAM),
// answering nothing else; other streams' frames are skipped.
func (fc *frameClient) await(id uint32) *answer {
	fc.t.Helper()
	a := &answer{}
	for !a.ended && !a.reset {
		switch f := fc.read().(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if v := f.PseudoValue("status"); v != "" {
					a.status = v
				}
				a.ended = f.StreamEnded()
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				a.body = append(a.body, f.Data()...)
				a.ended = f.StreamEnded()
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				a.rst, a.reset = f.ErrCode, true
			}
		case *http2.GoAwayFrame:
			fc.t.Fatalf("GOAWAY %v while waiting for stream %d", f.ErrCode, id)
		}
	}
	return a
}

// The client's flow-control windows hold the server's DATA: with a
// stream window of 1000 bytes (then a connection window of 64 KiB), a
// 100,000-byte answer arrives in window-sized steps, never more than the
// client granted, and whole.
func TestH2ServerFlowControlSlowReader(t *testing.T) {
	const size = 100000
	body := bytes.Repeat([]byte("0123456789"), size/10)
	l := startH2(t, config.HTTP2{}, config.Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for p := body; len(p) > 0; {
			n := min(len(p), 7000)
			if _, err := w.Write(p[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			p = p[n:]
		}
	}))
	for _, c := range []struct {
		name         string
		streamWindow uint32 // the client's SETTINGS_INITIAL_WINDOW_SIZE
		grant        uint32 // given back each time a window is used up
	}{
		{"stream window", 1000, 1000},
		{"connection window", 1<<31 - 1, 20000},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := dialFrames(t, l.Addr().String(), http2.Setting{ID: http2.SettingInitialWindowSize, Val: c.streamWindow})
			fc.headers(1, "GET", "/", true)
			streamLeft, connLeft := int64(c.streamWindow), int64(65535)
			var got []byte
			for ended := false; !ended; {
				switch f := fc.read().(type) {
				case *http2.DataFrame:
					n := int64(len(f.Data()))
					streamLeft -= n
					connLeft -= n
					if streamLeft < 0 || connLeft < 0 {
						t.Fatalf("the server sent beyond the windows (stream %d, connection %d left)", streamLeft, connLeft)
					}
					got = append(got, f.Data()...)
					ended = f.StreamEnded()
					if streamLeft == 0 && !ended {
						fc.must(fc.fr.WriteWindowUpdate(1, c.grant))
						streamLeft += int64(c.grant)
					}
					if connLeft == 0 && !ended {
						fc.must(fc.fr.WriteWindowUpdate(0, c.grant))
						connLeft += int64(c.grant)
					}
				case *http2.RSTStreamFrame:
					t.Fatalf("stream reset: %v", f.ErrCode)
				case *http2.MetaHeadersFrame:
					ended = f.StreamEnded()
				}
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("got %d bytes, want the %d-byte body", len(got), len(body))
			}
			// What the client granted back on the connection stays usable.
			fc.must(fc.fr.WriteWindowUpdate(0, uint32(65535-connLeft)))
		})
	}
}

// The server's own receive windows: a handler that reads nothing holds the
// client to the stream window (one byte more is FLOW_CONTROL_ERROR), and a
// handler that reads gives the window back (WINDOW_UPDATE) as it reads, so a
// body many windows long goes through.
func TestH2ServerReceiveWindow(t *testing.T) {
	release := make(chan struct{})
	stuck := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	l := startH2(t, config.HTTP2{InitialStreamWindowSize: 65535, InitialConnectionWindowSize: 1 << 20}, config.Limits{},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/stuck" {
				stuck <- struct{}{}
				<-release
				_, err := io.Copy(io.Discard, r.Body)
				readErr <- err
				return
			}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				w.WriteHeader(500)
				return
			}
			_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
		}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	fc := dialFrames(t, l.Addr().String())
	chunk := make([]byte, 16384)

	// Stream 1: nobody reads; the window is 65535.
	fc.headers(1, "POST", "/stuck", false)
	<-stuck // (a stream reset before its handler starts never runs it)
	for left := 65535; left > 0; left -= min(left, len(chunk)) {
		fc.must(fc.fr.WriteData(1, false, chunk[:min(left, len(chunk))]))
	}
	fc.must(fc.fr.WriteData(1, false, []byte{1}))
	if a := fc.await(1); !a.reset || a.rst != http2.ErrCodeFlowControl {
		t.Fatalf("one byte beyond the stream window: %+v, want RST_STREAM FLOW_CONTROL_ERROR", a)
	}
	close(release)
	if err := <-readErr; err == nil {
		t.Fatal("the reset stream's handler read its body to the end")
	}

	// Stream 3: read as it comes; 8 windows of body, sent as credit returns.
	const total = 8 * 65535
	fc.headers(3, "POST", "/count", false)
	window, sent, updates := int64(65535), 0, 0
	for sent < total {
		for window > 0 && sent < total {
			n := int(min(window, int64(len(chunk)), int64(total-sent)))
			fc.must(fc.fr.WriteData(3, sent+n == total, chunk[:n]))
			sent += n
			window -= int64(n)
		}
		for window == 0 && sent < total {
			switch f := fc.read().(type) {
			case *http2.WindowUpdateFrame:
				if f.StreamID == 3 {
					window += int64(f.Increment)
					updates++
				}
			case *http2.RSTStreamFrame:
				t.Fatalf("stream 3 reset: %v", f.ErrCode)
			}
		}
	}
	a := fc.await(3)
	if a.status != "200" || string(a.body) != strconv.Itoa(total) {
		t.Fatalf("stream 3: %+v, want 200 %d", a, total)
	}
	if updates == 0 {
		t.Fatal("no WINDOW_UPDATE for stream 3")
	}
}

// RST_STREAM from the client ends the stream's context (the proxy's
// upstream request is made with it) and its body reads; the connection
// goes on serving.
func TestH2ServerClientResetCancelsHandler(t *testing.T) {
	started := make(chan struct{}, 1)
	type result struct {
		cause   error
		bodyErr error
	}
	done := make(chan result, 1)
	l := startH2(t, config.HTTP2{}, config.Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		_, err := r.Body.Read(make([]byte, 10))
		done <- result{context.Cause(r.Context()), err}
	}))
	fc := dialFrames(t, l.Addr().String())
	fc.headers(1, "POST", "/wait", false)
	<-started
	fc.must(fc.fr.WriteRSTStream(1, http2.ErrCodeCancel))
	res := <-done
	if res.cause == nil {
		t.Fatal("the handler's context did not end on RST_STREAM")
	}
	if res.bodyErr == nil || res.bodyErr == io.EOF {
		t.Fatalf("the reset stream's body read gave %v, want an error", res.bodyErr)
	}
	fc.headers(3, "GET", "/after", true)
	if a := fc.await(3); a.status != "200" || string(a.body) != "ok" {
		t.Fatalf("stream 3 after the reset: %+v", a)
	}
}

// A drain sends GOAWAY naming the last stream served; that stream
// finishes, streams opened after it are refused, then the connection
// closes and Shutdown returns.
func TestH2ServerDrainLetsStreamsFinish(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var served atomic.Int32
	l, err := Listen(Options{Name: "t", Address: "127.0.0.1:0",
		Handler: func(ctx *fasthttp.RequestCtx) {}, H2: &H2Options{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			started <- struct{}{}
			<-release
			_, _ = io.WriteString(w, "finished")
		})}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	shut := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		<-shut
	})
	fc := dialFrames(t, l.Addr().String())
	fc.headers(1, "GET", "/slow", true)
	<-started
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- l.Shutdown(ctx)
	}()
	for {
		if ga, ok := fc.read().(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
				t.Fatalf("GOAWAY %v last stream %d, want NO_ERROR 1", ga.ErrCode, ga.LastStreamID)
			}
			break
		}
	}
	fc.headers(3, "GET", "/late", true)
	if a := fc.await(3); !a.reset || a.rst != http2.ErrCodeRefusedStream {
		t.Fatalf("a stream opened after the GOAWAY: %+v, want REFUSED_STREAM", a)
	}
	close(release)
	if a := fc.await(1); a.status != "200" || string(a.body) != "finished" || !a.ended {
		t.Fatalf("the stream in flight: %+v, want its whole answer", a)
	}
	if _, err := fc.fr.ReadFrame(); err == nil {
		t.Fatal("the connection stayed open after its last stream")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	shut <- nil
	if n := served.Load(); n != 1 {
		t.Fatalf("%d streams served, want 1", n)
	}
}

// A header list beyond max_header_list_size is answered 431 without the
// handler, and the connection serves the next stream.
func TestH2ServerOversizedHeaderList(t *testing.T) {
	var calls atomic.Int32
	l := startH2(t, config.HTTP2{MaxHeaderListSize: 4096}, config.Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	fc := dialFrames(t, l.Addr().String())
	var big []string
	for i := range 10 { // 10 fields of ~1000 bytes: 10 KB against 4096
		big = append(big, "x-big-"+strconv.Itoa(i), strings.Repeat("a", 1000))
	}
	fc.headers(1, "GET", "/big", true, big...)
	if a := fc.await(1); a.status != "431" {
		t.Fatalf("oversized header list: %+v, want 431", a)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for an oversized header list", n)
	}
	fc.headers(3, "GET", "/ok", true, "x-small", "v")
	if a := fc.await(3); a.status != "200" || string(a.body) != "ok" {
		t.Fatalf("the next stream: %+v", a)
	}
}

// Malformed requests (RFC 9113 §8.2.2, §8.3.1) are reset with
// PROTOCOL_ERROR before any handler runs, and the connection goes on.
func TestH2ServerMalformedRequests(t *testing.T) {
	var calls atomic.Int32
	l := startH2(t, config.HTTP2{}, config.Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return // the content-length case: its body is refused midway
		}
		calls.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	fc := dialFrames(t, l.Addr().String())
	id := uint32(1)
	for _, extra := range [][]string{
		{"connection", "close"},
		{"te", "gzip"},
		{"transfer-encoding", "chunked"},
		{"content-length", "x"},
	} {
		fc.headers(id, "GET", "/", true, extra...)
		if a := fc.await(id); !a.reset || a.rst != http2.ErrCodeProtocol {
			t.Errorf("%v: %+v, want RST_STREAM PROTOCOL_ERROR", extra, a)
		}
		id += 2
	}
	// A declared content-length the body does not match.
	fc.headers(id, "POST", "/", false, "content-length", "10")
	fc.must(fc.fr.WriteData(id, true, []byte("short")))
	if a := fc.await(id); !a.reset || a.rst != http2.ErrCodeProtocol {
		t.Errorf("content-length mismatch: %+v, want RST_STREAM PROTOCOL_ERROR", a)
	}
	id += 2
	fc.headers(id, "GET", "/", true, "te", "trailers")
	if a := fc.await(id); a.status != "200" {
		t.Fatalf("a well-formed request after them: %+v", a)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the handler served %d requests, want 1 (the well-formed one)", n)
	}
}

// Trailers both ways, as gRPC uses them: the request's (declared) reach
// the handler at the body's end; the handler's go after the body.
func TestH2ServerTrailers(t *testing.T) {
	l := startH2(t, config.HTTP2{}, config.Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Header().Set("content-type", "application/grpc")
		w.WriteHeader(200)
		_, _ = w.Write(b)
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"X-Echo", r.Trailer.Get("X-Req"))
	}))
	fc := dialFrames(t, l.Addr().String())
	fc.headers(1, "POST", "/svc/M", false, "trailer", "x-req")
	fc.must(fc.fr.WriteData(1, false, []byte("hello")))
	fc.hbuf.Reset()
	_ = fc.enc.WriteField(hpack.HeaderField{Name: "x-req", Value: "v1"})
	fc.must(fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: fc.hbuf.Bytes(), EndStream: true, EndHeaders: true}))
	var body []byte
	trailers := map[string]string{}
	status := ""
	for ended := false; !ended; {
		switch f := fc.read().(type) {
		case *http2.MetaHeadersFrame:
			if st := f.PseudoValue("status"); st != "" {
				status = st
			} else {
				for _, hf := range f.RegularFields() {
					trailers[hf.Name] = hf.Value
				}
			}
			ended = f.StreamEnded()
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			ended = f.StreamEnded()
		case *http2.RSTStreamFrame:
			t.Fatalf("reset: %v", f.ErrCode)
		}
	}
	if status != "200" || string(body) != "hello" || trailers["grpc-status"] != "0" || trailers["x-echo"] != "v1" {
		t.Fatalf("status %q body %q trailers %v", status, body, trailers)
	}
}

// A connection without streams for idle_timeout gets GOAWAY (NO_ERROR)
// and is closed; one whose client goes silent is pinged after
// keepalive_interval and closed when the PING is not answered within
// keepalive_timeout.
func TestH2ServerIdleAndKeepalive(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	t.Run("idle timeout", func(t *testing.T) {
		l := startH2(t, config.HTTP2{}, config.Limits{IdleTimeout: config.Duration(300 * time.Millisecond)}, ok)
		fc := dialFrames(t, l.Addr().String())
		fc.headers(1, "GET", "/", true)
		if a := fc.await(1); a.status != "200" {
			t.Fatalf("%+v", a)
		}
		var goAway *http2.GoAwayFrame
		for {
			f, err := fc.fr.ReadFrame()
			if err != nil {
				break // closed
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				goAway = ga
			}
		}
		if goAway == nil || goAway.ErrCode != http2.ErrCodeNo || goAway.LastStreamID != 1 {
			t.Fatalf("idle connection closed with GOAWAY %+v, want NO_ERROR naming stream 1", goAway)
		}
	})
	t.Run("keep-alive PING unanswered", func(t *testing.T) {
		l := startH2(t, config.HTTP2{KeepaliveInterval: config.Duration(200 * time.Millisecond), KeepaliveTimeout: config.Duration(300 * time.Millisecond)},
			config.Limits{}, ok)
		fc := dialFrames(t, l.Addr().String())
		pinged := false
		for {
			f, err := fc.fr.ReadFrame()
			if err != nil {
				break // closed
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				pinged = true // and not answered
			}
		}
		if !pinged {
			t.Fatal("the connection was closed without a keep-alive PING first")
		}
	})
	t.Run("keep-alive PING answered", func(t *testing.T) {
		l := startH2(t, config.HTTP2{KeepaliveInterval: config.Duration(100 * time.Millisecond), KeepaliveTimeout: config.Duration(5 * time.Second)},
			config.Limits{}, ok)
		fc := dialFrames(t, l.Addr().String())
		for answered := 0; answered < 3; {
			if p, ok := fc.read().(*http2.PingFrame); ok && !p.IsAck() {
				fc.must(fc.fr.WritePing(true, p.Data))
				answered++
			}
		}
		fc.headers(1, "GET", "/", true)
		if a := fc.await(1); a.status != "200" {
			t.Fatalf("after three answered PINGs: %+v", a)
		}
	})
}
