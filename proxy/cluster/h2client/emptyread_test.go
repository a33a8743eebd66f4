package h2client

import (
	"context"
	"io"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// emptyReads is a request body whose first reads give nothing and no
// error (io.Reader allows it), then its bytes.
type emptyReads struct {
	empties int
	data    string
}

func (r *emptyReads) Read(p []byte) (int, error) {
	if r.empties > 0 {
		r.empties--
		return 0, nil
	}
	if r.data == "" {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A read of the request body that gives nothing sends nothing: the
// server gets the body's bytes in one DATA frame and then END_STREAM (an
// empty DATA frame, since the body's io.EOF came alone), no empty frame
// before them.
func TestEmptyBodyReadSendsNoFrame(t *testing.T) {
	addr, peers := rawServer(t, 4096)
	tr, _ := newTransport(t, addr, Config{})
	req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://weft.test/x", &emptyReads{empties: 3, data: "abc"})
	res := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		res <- result{resp, err}
	}()
	p, id := started(t, tr, peers)
	var got []string
	for {
		d := p.readUntil(t, "the body", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
		s := string(d.Data())
		if d.StreamEnded() {
			s += "|END"
		}
		got = append(got, s)
		if d.StreamEnded() {
			break
		}
	}
	if len(got) != 2 || got[0] != "abc" || got[1] != "|END" {
		t.Errorf("DATA frames %q, want [abc |END]", got)
	}
	p.respond(t, id)
	if r := await(t, res); r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("%+v", r)
	}
}
