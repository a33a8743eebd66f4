package h2client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// wait is the generous deadline for conditions polled under load.
const wait = 30 * time.Second

// h2cServer serves h over h2c (prior knowledge) on loopback; ln, when
// set, is the listener to serve on.
func h2cServer(t *testing.T, h http.Handler, cfg *http.HTTP2Config, ln net.Listener) (string, *http.Server) {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, HTTP2: cfg, Protocols: &p}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String(), srv
}

func newTransport(t *testing.T, addr string, cfg Config) (*Transport, *atomic.Int64) {
	t.Helper()
	dials := new(atomic.Int64)
	cfg.Dial = func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	tr := New(cfg)
	t.Cleanup(tr.Close)
	return tr, dials
}

func get(t *testing.T, tr *Transport, ctx context.Context, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr.RoundTrip(req)
}

func TestRoundTripHeadersBodyTrailers(t *testing.T) {
	addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("X-Got-Path", r.URL.RequestURI())
		w.Header().Set("X-Got-Te", r.Header.Get("Te"))
		w.Header().Set("X-Got-Id", r.Header.Get("X-Request-Id"))
		_, _ = w.Write(append([]byte("echo:"), b...))
		w.Header().Set("Grpc-Status", "7")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "denied")
	}), nil, nil)
	tr, _ := newTransport(t, addr, Config{})
	for i := range 3 { // the second and third reuse the HPACK table
		id := "id-" + strconv.Itoa(i)
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/svc/Method?x=1", strings.NewReader("hello"))
		req.Header.Set("te", "trailers")
		req.Header.Set("x-request-id", id)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || string(b) != "echo:hello" {
			t.Fatalf("status %d body %q", resp.StatusCode, b)
		}
		if got := resp.Header.Values("X-Multi"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Fatalf("X-Multi %q", got)
		}
		if resp.Header.Get("X-Got-Path") != "/svc/Method?x=1" || resp.Header.Get("X-Got-Te") != "trailers" || resp.Header.Get("X-Got-Id") != id {
			t.Fatalf("server saw %v", resp.Header)
		}
		if resp.Trailer.Get("Grpc-Status") != "7" || resp.Trailer.Get("Grpc-Message") != "denied" {
			t.Fatalf("trailers %v", resp.Trailer)
		}
	}
	if n := tr.NumConns(); n != 1 {
		t.Fatalf("%d connections for sequential requests, want 1", n)
	}
}

func TestTLSWithALPN(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "example.com"
	tr := New(Config{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
		if err != nil {
			return nil, err
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = nc.Close()
			return nil, fmt.Errorf("ALPN chose %q", p)
		}
		return tc, nil
	}})
	t.Cleanup(tr.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Fatalf("server saw %q", b)
	}
}

// TestFlowControlLargeBodies sends and receives 8 MiB bodies, several at
// once, through windows of 64 KiB on both sides.
func TestFlowControlLargeBodies(t *testing.T) {
	const size = 8 << 20
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	want := sha256.Sum256(payload)
	addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
			return
		}
		_, _ = io.Copy(w, bytes.NewReader(payload))
	}), &http.HTTP2Config{MaxReceiveBufferPerStream: 65535, MaxReceiveBufferPerConnection: 65535}, nil)
	tr, _ := newTransport(t, addr, Config{StreamWindow: 65535, ConnWindow: 65535})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 3 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/up", bytes.NewReader(payload))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if got := fmt.Sprintf("%d %x", size, want); err != nil || string(b) != got {
				errs <- fmt.Errorf("upload: server saw %q (err %v), want %q", b, err, got)
			}
		}()
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/down", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			_ = resp.Body.Close()
			if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
				errs <- fmt.Errorf("download: %d bytes, err %v, digest match %v", n, err, bytes.Equal(h.Sum(nil), want[:]))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// sharedListener hands the connections one listener accepts to whichever
// server is current, so that one server can shut down (GOAWAY) while the
// next one takes the new connections.
type sharedListener struct {
	net.Listener
	conns chan net.Conn
}

type subListener struct {
	*sharedListener
	done chan struct{}
	once sync.Once
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *subListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

// TestGoAwayMidLoad: a server shuts down gracefully (GOAWAY) under load;
// requests it did not process go on a new connection: none fails.
func TestGoAwayMidLoad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shared := &sharedListener{Listener: ln, conns: make(chan net.Conn)}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			shared.conns <- c
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-acceptDone })
	var served [2]atomic.Int64
	handler := func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served[i].Add(1)
			_, _ = io.WriteString(w, "ok")
		})
	}
	sub1 := &subListener{sharedListener: shared, done: make(chan struct{})}
	addr, srv1 := h2cServer(t, handler(0), nil, sub1)
	tr, dials := newTransport(t, addr, Config{})

	const workers, perWorker = 16, 150
	var failed atomic.Int64
	var firstErr atomic.Value
	var total atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				resp, err := get(t, tr, context.Background(), "http://"+addr+"/")
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if err == nil && string(b) != "ok" {
						err = fmt.Errorf("body %q", b)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				total.Add(1)
			}
		}()
	}
	// Mid-load, the first server goes away and a second takes over.
	deadline := time.Now().Add(wait)
	for total.Load() < workers*perWorker/3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	sub2 := &subListener{sharedListener: shared, done: make(chan struct{})}
	h2cServer(t, handler(1), nil, sub2)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv1.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed across the GOAWAY; first: %v", n, workers*perWorker, firstErr.Load())
	}
	if served[0].Load() == 0 || served[1].Load() == 0 || dials.Load() < 2 {
		t.Fatalf("served %d before and %d after the GOAWAY over %d dials: the GOAWAY did not happen mid-load",
			served[0].Load(), served[1].Load(), dials.Load())
	}
	if got := served[0].Load() + served[1].Load(); got != workers*perWorker {
		t.Fatalf("servers handled %d requests, want %d (each exactly once)", got, workers*perWorker)
	}
}

// TestServerReset: a server's RST_STREAM fails that stream (before or
// after its headers) and the connection keeps serving.
func TestServerReset(t *testing.T) {
	addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/after-headers" {
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		if r.URL.Path != "/ok" {
			panic(http.ErrAbortHandler) // RST_STREAM
		}
		_, _ = io.WriteString(w, "ok")
	}), nil, nil)
	tr, dials := newTransport(t, addr, Config{})
	if resp, err := get(t, tr, context.Background(), "http://"+addr+"/before-headers"); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("reset before headers: got %d, want an error", resp.StatusCode)
	} else if se := (http2.StreamError{}); !errors.As(err, &se) {
		t.Fatalf("reset before headers: %v, want a StreamError", err)
	}
	resp, err := get(t, tr, context.Background(), "http://"+addr+"/after-headers")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if se := (http2.StreamError{}); !errors.As(err, &se) || string(b) != "partial" {
		t.Fatalf("reset after headers: read %q, err %v; want \"partial\" then a StreamError", b, err)
	}
	resp, err = get(t, tr, context.Background(), "http://"+addr+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(b) != "ok" || dials.Load() != 1 {
		t.Fatalf("after the resets: %q over %d dials, want ok over 1", b, dials.Load())
	}
}

// TestClientReset: the request's context ending, or the body closed
// early, resets the stream: the server's handler sees its context end.
func TestClientReset(t *testing.T) {
	gone := make(chan string, 4)
	started := make(chan struct{}, 4)
	addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			_, _ = io.WriteString(w, "first")
			w.(http.Flusher).Flush()
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			gone <- r.URL.Path
		case <-time.After(wait):
		}
	}), nil, nil)
	tr, _ := newTransport(t, addr, Config{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		resp, err := get(t, tr, ctx, "http://"+addr+"/wait")
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled request: %v, want context.Canceled", err)
	}
	select {
	case p := <-gone:
		if p != "/wait" {
			t.Fatalf("server saw %s end", p)
		}
	case <-time.After(wait):
		t.Fatal("the server never saw the canceled stream end")
	}

	resp, err := get(t, tr, context.Background(), "http://"+addr+"/stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("read %q, %v", buf, err)
	}
	<-started
	_ = resp.Body.Close()
	select {
	case p := <-gone:
		if p != "/stream" {
			t.Fatalf("server saw %s end", p)
		}
	case <-time.After(wait):
		t.Fatal("the server never saw the stream whose body was closed end")
	}
}

// TestMaxConcurrentStreams: with the server allowing 2 streams per
// connection, 6 concurrent calls open 3 connections; with MaxConns 1 the
// calls beyond 2 wait for a free stream, and all succeed.
func TestMaxConcurrentStreams(t *testing.T) {
	var mu sync.Mutex
	perConn := map[string]int{}
	maxPerConn := 0
	release := make(chan struct{})
	var running atomic.Int64
	addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		perConn[r.RemoteAddr]++
		maxPerConn = max(maxPerConn, perConn[r.RemoteAddr])
		mu.Unlock()
		running.Add(1)
		<-release
		running.Add(-1)
		mu.Lock()
		perConn[r.RemoteAddr]--
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}), &http.HTTP2Config{MaxConcurrentStreams: 2}, nil)

	run := func(tr *Transport, n int) chan error {
		errs := make(chan error, n)
		for range n {
			go func() {
				resp, err := get(t, tr, context.Background(), "http://"+addr+"/")
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if err == nil && string(b) != "ok" {
						err = fmt.Errorf("body %q", b)
					}
				}
				errs <- err
			}()
		}
		return errs
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	tr, dials := newTransport(t, addr, Config{})
	errs := run(tr, 6)
	waitFor("6 calls running", func() bool { return running.Load() == 6 })
	if n := tr.NumConns(); n != 3 || dials.Load() != 3 {
		t.Fatalf("%d connections (%d dials) for 6 streams at 2 per connection, want 3", n, dials.Load())
	}
	for range 6 {
		release <- struct{}{}
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	tr1, dials1 := newTransport(t, addr, Config{MaxConns: 1})
	errs = run(tr1, 5)
	waitFor("2 calls running", func() bool { return running.Load() == 2 })
	for range 5 {
		release <- struct{}{}
	}
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxPerConn != 2 || dials1.Load() != 1 {
		t.Fatalf("at most %d streams on a connection (want 2), %d dials with MaxConns 1 (want 1)", maxPerConn, dials1.Load())
	}
}

// byteFields is a Fields from name/value pairs.
type byteFields [][2]string

func (f byteFields) VisitFields(emit func(name, value []byte)) {
	for _, kv := range f {
		emit([]byte(kv[0]), []byte(kv[1]))
	}
}

// TestFieldsFromContext: fields given as bytes are sent lower-cased (the
// connection-specific ones dropped, TE only as trailers), the same on
// every call of a connection; invalid ones fail the request, not the
// process.
func TestFieldsFromContext(t *testing.T) {
	addr, _ := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for k, vs := range r.Header {
			names = append(names, k+"="+strings.Join(vs, ","))
		}
		w.Header().Set("X-Seen", strings.Join(sortStrings(names), ";"))
	}), nil, nil)
	tr, dials := newTransport(t, addr, Config{})
	send := func(f byteFields) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(WithFields(context.Background(), f), http.MethodGet, "http://"+addr+"/", nil)
		return tr.RoundTrip(req)
	}
	for i := range 3 {
		f := byteFields{{"X-App", "v1"}, {"x-request-id", "id-" + strconv.Itoa(i)}, {"Connection", "close"},
			{"host", "elsewhere"}, {"te", "Trailers"}, {"Content-Length", "99"}}
		resp, err := send(f)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		want := "Te=trailers;X-App=v1;X-Request-Id=id-" + strconv.Itoa(i)
		if got := resp.Header.Get("X-Seen"); got != want {
			t.Fatalf("call %d: server saw %q, want %q", i, got, want)
		}
	}
	for _, bad := range []byteFields{{{"bad name", "v"}}, {{"x-ok", "line\nbreak"}}, {{"", "v"}}} {
		if resp, err := send(bad); err == nil {
			_ = resp.Body.Close()
			t.Fatalf("fields %q: sent, want an error", bad)
		}
	}
	resp, err := send(byteFields{{"x-after", "ok"}})
	if err != nil {
		t.Fatalf("after refused fields: %v", err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("X-Seen"); got != "X-After=ok" || dials.Load() != 1 {
		t.Fatalf("after refused fields the server saw %q over %d dials (want 1: a bad request does not cost the connection)", got, dials.Load())
	}
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
