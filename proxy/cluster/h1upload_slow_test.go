package cluster

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// slowReader reads at most 32 KiB at a time, after a pause of 10 ms: an
// upstream that takes an upload slowly but steadily.
type slowReader struct{ c net.Conn }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return s.c.Read(p[:min(len(p), 32<<10)])
}

// A spliced upload to an upstream that keeps reading is not cut, however
// long it takes in all: the write deadline is pushed ahead at each splice
// step, not only set once before the splice. The upload takes several
// idle timeouts, each of its steps (at most the pipe's 256 KiB, 80 ms at
// the upstream's pace) far less than one: a step may wait over 900 ms for
// a CPU on a loaded machine before the bound is reached.
func TestDoStreamBodySplicedSlowUpstreamNotCut(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const idle = time.Second
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked ", chunked), func(t *testing.T) {
			got := make(chan *upRequest, 1)
			addr := testserver.ServeTCP(t, func(c net.Conn) {
				_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
				r := readUpRequest(bufio.NewReaderSize(slowReader{c}, 64<<10))
				got <- r
				if r.err == nil {
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\ngot %d", len(fmt.Sprint("got ", len(r.body))), len(r.body))
				}
			})
			c := start(t, config.Cluster{Name: "u", Endpoints: static(addr), IdleTimeout: config.Duration(idle)}, Options{})
			e := c.Pick(0, false, nil)
			// At 32 KiB per 10 ms or slower (each Read sleeps first), 8 MiB
			// take 2.56 s or more: over two idle timeouts.
			const total = 8 << 20
			w, r := testClientSocket(t)
			data := sendBody(t, w, total, true)
			body := &socketBody{src: r, left: total, maxRead: 1000, offer: true}
			size := total
			if chunked {
				size = -1
			}
			req, resp := streamReq()
			req.Header.SetMethod("POST")
			rb, err := e.DoStreamBody(req, body, size, resp, time.Now().Add(20*time.Second)) // a safety net: a cut upload waits for an answer until then
			up := received(t, got)
			if up.err != nil || !bytes.Equal(up.body, data) {
				t.Fatalf("the upstream read %d bytes (%v), want %d (DoStreamBody: %v)", len(up.body), up.err, total, err)
			}
			uploadAnswer(t, rb, err, resp, total)
			spliced, _, _ := body.splices()
			if len(spliced) == 0 {
				t.Fatal("nothing spliced")
			}
		})
	}
}

// An upstream over TLS that stops reading an upload: the write gives up at
// the cluster's idle timeout too. Over TLS every piece goes through the
// buffered writer, and the deadline is the one set at its flush before
// each read of the body (line 130 clears any other before the upload).
func TestDoStreamBodyUpstreamStopsReadingTLS(t *testing.T) {
	pki := newTestPKI(t)
	stop := make(chan struct{})
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*pki.server}})
		if tc.Handshake() != nil {
			return
		}
		readRequest(tc)
		<-stop // reads nothing more, answers nothing
	})
	t.Cleanup(func() { close(stop) })
	c := start(t, config.Cluster{Name: "t", Endpoints: static(addr), TLS: &config.ClusterTLS{Mode: "mtls"},
		IdleTimeout: config.Duration(200 * time.Millisecond)}, Options{TLS: pki.client()})
	e := c.Pick(0, false, nil)
	const size = 32 << 20 // far more than the sockets hold
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	done := make(chan error, 1)
	go func() {
		rb, err := e.DoStreamBody(req, io.LimitReader(zeros{}, size), size, resp, time.Now().Add(time.Second))
		if rb != nil {
			_ = rb.Close()
			err = errors.New("an answer")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != fasthttp.ErrTimeout {
			t.Fatalf("%v (%T): want fasthttp.ErrTimeout", err, err)
		}
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the upload did not give up")
	}
}
