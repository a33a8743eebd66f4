package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// slowHandshakeListener holds each connection's first read (the client's
// TLS hello) for hold: a server slow to handshake.
type slowHandshakeListener struct {
	net.Listener
	hold time.Duration
}

func (l slowHandshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowFirstRead{Conn: c, hold: l.hold}, nil
}

type slowFirstRead struct {
	net.Conn
	hold time.Duration
	once sync.Once
}

func (c *slowFirstRead) Read(p []byte) (int, error) {
	c.once.Do(func() { time.Sleep(c.hold) })
	return c.Conn.Read(p)
}

// errPerTry is what the per-try timer of a RoundTripTry cancels with.
var errPerTry = errors.New("per-try timeout")

// A new TLS connection's handshake is part of getting the connection
// (pertry.go): one slower than the per-try timeout, within
// connect_timeout, does not cut the try, whose prompt answer comes
// through. Over HTTP/1.1 that takes doH1's own handshake (fasthttp does it
// at the request's first write, under the per-try deadline); over HTTP/2
// and net/http's transport the dial does it.
func TestPerTryStartsAfterTLSHandshake(t *testing.T) {
	const perTry = 500 * time.Millisecond // a loopback answer's time on a loaded machine
	for _, pc := range []protoCase{{"http1", true, false, ""}, {"http2", true, false, ""}, {"http1", true, true, ""}} {
		t.Run(pc.String(), func(t *testing.T) {
			t.Parallel()
			pki := newTestPKI(t)
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			tln := tls.NewListener(slowHandshakeListener{Listener: ln, hold: 3 * perTry},
				&tls.Config{Certificates: []tls.Certificate{*pki.server}, NextProtos: []string{"h2", "http/1.1"}})
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetHTTP2(true)
			srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "handshaken late")
			})}
			testserver.ServeHTTP(t, srv, tln)
			c := start(t, config.Cluster{Name: "t", Protocol: pc.protocol, Endpoints: static(addr),
				TLS: &config.ClusterTLS{Mode: "mtls"}, ConnectTimeout: config.Duration(10 * time.Second)}, Options{TLS: pki.client()})
			e := c.Pick(0, false, nil)
			var status int
			var body []byte
			if pc.h2down {
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				tt := NewTryTimer(perTry, func() { cancel(errPerTry) })
				resp, err := e.RoundTripTry(newStreamRequest(t, ctx, "GET", ""), true, tt)
				if tt.Stop() {
					err = errPerTry
				}
				if err != nil {
					t.Fatalf("a handshake slower than the per-try timeout: %v", err)
				}
				status = resp.StatusCode
				body, err = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
			} else {
				req, resp := streamReq()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				rb, err := e.DoTry(req, nil, 0, resp, time.Now().Add(20*time.Second), perTry)
				if err != nil {
					t.Fatalf("a handshake slower than the per-try timeout: %v (%v)", err, Classify(err))
				}
				if rb != nil {
					b, err := io.ReadAll(rb)
					_ = rb.Close()
					if err != nil {
						t.Fatal(err)
					}
					resp.SetBody(b)
				}
				status, body = resp.StatusCode(), resp.Body()
			}
			if status != 200 || string(body) != "handshaken late" {
				t.Fatalf("answer %d %q, want 200 %q", status, body, "handshaken late")
			}
		})
	}
}

// A TryTimer fires perTry after Sent, not before Sent; Stop reports it,
// and a Sent after Stop arms nothing.
func TestTryTimer(t *testing.T) {
	fired := make(chan struct{}, 1)
	tt := NewTryTimer(time.Millisecond, func() { fired <- struct{}{} })
	select {
	case <-fired:
		t.Fatal("fired before Sent")
	case <-time.After(50 * time.Millisecond):
	}
	tt.Sent()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("not fired 10s after Sent")
	}
	if !tt.Stop() {
		t.Fatal("Stop after it fired reported it had not")
	}
	tt = NewTryTimer(time.Millisecond, func() { fired <- struct{}{} })
	if tt.Stop() {
		t.Fatal("Stop before Sent reported it had fired")
	}
	tt.Sent()
	select {
	case <-fired:
		t.Fatal("a Sent after Stop armed it")
	case <-time.After(50 * time.Millisecond):
	}
}

// A try with a per-try timeout over HTTP/1.1 allocates nothing more than
// one without (TestDoStreamDoesNotAllocate): its deadline is computed,
// not timed.
func TestDoTryPerTryDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	addr := serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	c := start(t, config.Cluster{Name: "d", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	req, resp := streamReq()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	deadline := time.Now().Add(10 * time.Second)
	allocs := testing.AllocsPerRun(200, func() {
		body, err := e.DoTry(req, nil, 0, resp, deadline, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			_ = body.Close()
		}
		if string(resp.Body()) != "ok" {
			t.Fatalf("answer %q", resp.Body())
		}
	})
	if allocs >= 1 {
		t.Fatalf("DoTry with a per-try timeout allocates %v times per request", allocs)
	}
}
