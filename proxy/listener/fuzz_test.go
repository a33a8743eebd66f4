package listener

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/valyala/fasthttp"
)

var fuzzSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\na\n\nb\n\nGET / HTTP/1.1\nHost: a\n\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\n\n\n\n\r\n0\r\nX-T: 1\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX Bad: v\r\nX-A: one\r\n two\r\n\r\n",
	"GET http://u@a/ HTTP/1.7\r\nHost: a\r\n\r\n",
	"\r\nCONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n\n\n",
	"GET / HTTP/1.1\r\nUpgrade: websocket\r\nHost: a\r\n\r\n\n",
}

// FuzzH1Framer: the framer decides the same whatever the reads' sizes,
// and stops a stream only just before a LF that no CR precedes.
func FuzzH1Framer(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		whole := h1Framer{maxHead: 4096, cl: -1}
		n, ok := whole.scan(data)
		if !ok {
			if n >= len(data) || data[n] != '\n' || (n > 0 && data[n-1] == '\r') {
				t.Fatalf("stopped at %d of %q: not a bare LF", n, data)
			}
		} else if n != len(data) {
			t.Fatalf("passed %d of %d bytes without stopping", n, len(data))
		}
		// The same bytes in reads of step bytes.
		s := int(step%16) + 1
		parts := h1Framer{maxHead: 4096, cl: -1}
		got, pok := 0, true
		for i := 0; i < len(data) && pok; i += s {
			k, kok := parts.scan(data[i:min(i+s, len(data))])
			got += k
			pok = kok
		}
		if pok != ok || got != n {
			t.Fatalf("in reads of %d: passed %d (ok %v), whole: %d (ok %v), input %q", s, got, pok, n, ok, data)
		}
	})
}

// FuzzCheckHead: a head fasthttp parsed and checkHead accepted carries
// only token names, no CR, LF or NUL in values, at most the maximum of
// fields, a known version and no userinfo.
func FuzzCheckHead(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(bytes.NewReader(data))); err != nil {
			return
		}
		const max = 8
		if _, _, ok := checkHead(&h, max); !ok {
			return
		}
		if p := string(h.Protocol()); p != "HTTP/1.1" && p != "HTTP/1.0" {
			t.Fatalf("accepted version %q", p)
		}
		if hasUserinfo(h.RequestURI()) {
			t.Fatalf("accepted userinfo in %q", h.RequestURI())
		}
		n := 0
		for k, v := range h.All() {
			n++
			if !isToken(k) {
				t.Fatalf("accepted header name %q", k)
			}
			if bytes.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("accepted header value %q", v)
			}
		}
		// All also lists the fields fasthttp keeps apart (Host, Content-Type,
		// User-Agent, ...) and the Content-Length it computes.
		if n > max+4 {
			t.Fatalf("accepted %d fields, max %d", n, max)
		}
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzH1FramerAgreesWithFasthttp: request by request, where fasthttp (as
// the server reads: head, then the body its framing says) ends a request
// the framer is at the start of a head too, unless it stopped framing; and
// it refuses a request fasthttp parsed only at a bare LF.
func FuzzH1FramerAgreesWithFasthttp(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\n\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		br := bufio.NewReaderSize(cr, 4096)
		fr := h1Framer{maxHead: 4096, cl: -1}
		off := 0
		var req fasthttp.Request
		for off < len(data) {
			req.Reset()
			err := req.Header.Read(br)
			if err == nil {
				err = req.ContinueReadBody(br, 1<<20, false)
			}
			if err != nil {
				return
			}
			end := cr.n - br.Buffered()
			k, ok := fr.scan(data[off:end])
			if !ok {
				// Only for a bare LF, which fasthttp accepts on the request
				// line and checkHead cannot see there.
				if i := off + k; data[i] != '\n' || (i > 0 && data[i-1] == '\r') {
					t.Fatalf("the framer refused %q at %d: not a bare LF", data[off:end], k)
				}
				return
			}
			if fr.st == stPass {
				return
			}
			if _, _, accepted := checkHead(&req.Header, 100); !accepted {
				return // the listener closes the connection here
			}
			if fr.st != stHead || fr.lineNo != 0 || fr.n != 0 {
				t.Fatalf("out of step after %q (fasthttp's request): state %d, line %d", data[off:end], fr.st, fr.lineNo)
			}
			off = end
		}
	})
}
