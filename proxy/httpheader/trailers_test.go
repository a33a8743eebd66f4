package httpheader

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func fields(seq func(func([]byte, []byte) bool)) string {
	var b strings.Builder
	for k, v := range seq {
		b.WriteString(string(k) + "=" + string(v) + ";")
	}
	return b.String()
}

func TestRequestTrailers(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Head: h\r\n\r\n5\r\nalpha\r\n0\r\nX-Sum: abc\r\nX-Two: 1\r\nX-Two: 2\r\n\r\n"))
	req := &fasthttp.Request{}
	req.Header.DisableNormalizing()
	if err := req.Header.Read(br); err != nil {
		t.Fatal(err)
	}
	if got := fields(RequestTrailers(&req.Header)); got != "" {
		t.Fatalf("trailers before the body: %q", got)
	}
	if err := req.ContinueReadBodyStream(br, 0, true); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(req.BodyStream())
	if err != nil || string(body) != "alpha" {
		t.Fatalf("body %q %v", body, err)
	}
	if got, want := fields(RequestTrailers(&req.Header)), "X-Sum=abc;X-Two=1;X-Two=2;"; got != want {
		t.Fatalf("trailers %q, want %q", got, want)
	}
	SetRequestTrailers(&req.Header, func(yield func([]byte, []byte) bool) {
		_ = yield([]byte("x-sum"), []byte("def")) && yield([]byte("content-length"), []byte("5")) && yield([]byte("x-new"), []byte("n"))
	})
	if got, want := fields(RequestTrailers(&req.Header)), "x-sum=def;x-new=n;"; got != want {
		t.Fatalf("trailers after the edit %q, want %q (content-length may not be one)", got, want)
	}
	if string(req.Header.Peek("X-Head")) != "h" {
		t.Fatal("a header was lost")
	}
}
