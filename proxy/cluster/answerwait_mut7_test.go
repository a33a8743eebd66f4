package cluster

import (
	"bytes"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// A request whose last bytes bypass the final Flush (a body larger than
// the write buffer goes straight to the socket, leaving nothing to flush)
// arms the answer wait without a Write to use it: it is disarmed, so the
// next request on the same connection, an upload whose headers and first
// bytes must not wait for an answer the upstream gives only after the
// whole body, goes through.
func TestAnswerWaitDisarmedWhenFlushWritesNothing(t *testing.T) {
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "aw", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)

	big := bytes.Repeat([]byte{'b'}, 64<<10)
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	req.SetBody(big)
	rb, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
	if r := received(t, got); r.err != nil || !bytes.Equal(r.body, big) {
		t.Fatalf("first request: the upstream read %d bytes (%v)", len(r.body), r.err)
	}
	uploadAnswer(t, rb, err, resp, len(big))
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)

	req, resp = streamReq()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	ps, all := pieces(100, 200, 300)
	type result struct {
		rb  ResponseBody
		err error
	}
	done := make(chan result, 1)
	go func() {
		rb, err := e.DoStreamBody(req, &piecesReader{pieces: ps}, -1, resp, time.Now().Add(30*time.Second))
		done <- result{rb, err}
	}()
	r := received(t, got)
	if r.err != nil || !bytes.Equal(r.body, all) {
		t.Fatalf("upload: the upstream read %d bytes (%v), want %d", len(r.body), r.err, len(all))
	}
	select {
	case res := <-done:
		uploadAnswer(t, res.rb, res.err, resp, len(all))
	case <-time.After(30 * time.Second): // a safety net, not a measurement
		t.Fatal("the upload's answer never came")
	}
	if n := c.stats.ConnectionsOpened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused", n)
	}
}
