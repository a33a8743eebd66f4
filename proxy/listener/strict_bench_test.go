package listener

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// A typical mesh request head: the listener's added work per request is
// one framer pass over the head and one checkHead pass over its fields.
var benchHead = "GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: orders.default.svc.cluster.local\r\n" +
	"User-Agent: bench/1.0\r\nAccept: application/json\r\nX-Request-Id: 7c3e4b1a-9f0d-4e6b-8a2c-1d5e6f7a8b9c\r\n" +
	"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n"

func BenchmarkH1Framer(b *testing.B) {
	p := []byte(strings.Repeat(benchHead, 16))
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	f := h1Framer{maxHead: DefaultMaxHeaderBytes, cl: -1}
	for b.Loop() {
		if _, ok := f.scan(p); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckHead(b *testing.B) {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(benchHead))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := checkHead(&h, DefaultMaxHeadersCount); !ok {
			b.Fatal("refused")
		}
	}
}

// BenchmarkFasthttpParse is the reference: fasthttp parsing the same heads,
// the work every request already pays.
func BenchmarkFasthttpParse(b *testing.B) {
	p := strings.Repeat(benchHead, 16)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	var h fasthttp.RequestHeader
	r := strings.NewReader(p)
	br := bufio.NewReaderSize(r, 8192)
	for b.Loop() {
		r.Reset(p)
		br.Reset(r)
		for range 16 {
			if err := h.Read(br); err != nil {
				b.Fatal(err)
			}
		}
	}
}
