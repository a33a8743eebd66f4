package cluster

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// An HTTP/2 answer of unknown length carries no framing header of its own
// (HTTP/2 has no Transfer-Encoding): the header neither claims a length nor
// chunking; the body's ContentLength (-1) is what the downstream framing
// goes by.
func TestDoStreamOverHTTP2UnknownLengthHeader(t *testing.T) {
	_, e, _ := streamH2(t, false, 0)
	req, resp := h2StreamReq("GET", "/unknown")
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	body, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if err != nil || body == nil {
		t.Fatalf("%v, body %v", err, body != nil)
	}
	defer body.Close()
	if body.ContentLength() != -1 {
		t.Fatalf("body's length %d", body.ContentLength())
	}
	if cl := resp.Header.ContentLength(); cl == -1 {
		t.Fatalf("header's length %d (chunked) for an HTTP/2 answer", cl)
	}
	for k, v := range resp.Header.All() {
		switch string(k) {
		case "Content-Length", "Transfer-Encoding":
			t.Fatalf("%s: %s in an answer of unknown length", k, v)
		}
	}
	if b, err := io.ReadAll(body); err != nil || string(b) != "part1,part2" {
		t.Fatalf("%q, %v", b, err)
	}
}

// slowH2Upload sends "start", then waits in its second Read until release
// is closed (waiting is closed as that Read begins), then sends "rest" and
// ends.
type slowH2Upload struct {
	n       int
	waiting chan struct{}
	release chan struct{}
}

func (b *slowH2Upload) Read(p []byte) (int, error) {
	b.n++
	switch b.n {
	case 1:
		return copy(p, "start"), nil
	case 2:
		close(b.waiting)
		select {
		case <-b.release:
		case <-time.After(30 * time.Second): // a safety net
			return 0, errors.New("never released")
		}
		return copy(p, "rest"), nil
	}
	return 0, io.EOF
}

// Half duplex on HTTP/2 too: an upstream that sends its headers after the
// first bytes of an upload and reads the rest later does not let
// DoStreamBody return while the transport still reads the upload (its
// filters would run after the caller moved on). The answer waits for the
// whole body, which the upstream then echoes.
func TestDoStreamBodyOverHTTP2WaitsForUpload(t *testing.T) {
	body := &slowH2Upload{waiting: make(chan struct{}), release: make(chan struct{})}
	flushed := make(chan struct{})
	_, e, _ := startProtoCluster(t, protoCase{protocol: "http2"}, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(flushed)
		rest, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append(b, rest...))
	}, config.Cluster{})
	req, resp := h2StreamReq("POST", "/upload")
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	type result struct {
		rb  ResponseBody
		err error
	}
	done := make(chan result, 1)
	go func() {
		rb, err := e.DoStreamBody(req, body, 9, resp, time.Now().Add(30*time.Second))
		done <- result{rb, err}
	}()
	t.Cleanup(func() {
		select {
		case <-body.release:
		default:
			close(body.release)
		}
	})
	for _, ch := range []chan struct{}{body.waiting, flushed} {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("the upstream did not get the upload's first bytes")
		}
	}
	// The answer's headers are on their way while the upload waits for its
	// client: DoStreamBody must not return before the upload ended. A
	// return within this window is a failure; none is the expected outcome
	// (the window only gives a wrong implementation the time to show).
	select {
	case r := <-done:
		t.Fatalf("DoStreamBody returned (%v) while the upload was still being read", r.err)
	case <-time.After(500 * time.Millisecond):
	}
	close(body.release)
	r := <-done
	if r.err != nil || r.rb == nil {
		t.Fatalf("%v, body %v", r.err, r.rb != nil)
	}
	got, err := io.ReadAll(r.rb)
	_ = r.rb.Close()
	if err != nil || string(got) != "startrest" || resp.StatusCode() != 200 {
		t.Fatalf("%d %q, %v", resp.StatusCode(), got, err)
	}
	if body.n < 3 {
		t.Fatalf("the upload was read %d times, not to its end", body.n)
	}
}
