package httpheader

import (
	"bytes"
	"iter"

	"github.com/valyala/fasthttp"
)

// RequestTrailers is the trailer section fasthttp read after a request's
// chunked body (into h, apart from its headers), field by field in the
// order received. It is empty until the body has been read to its end.
// The slices are a copy, valid after h changes.
func RequestTrailers(h *fasthttp.RequestHeader) iter.Seq2[[]byte, []byte] {
	return trailers(h)
}

// ResponseTrailers is RequestTrailers for the trailer section read after
// a response's chunked body.
func ResponseTrailers(h *fasthttp.ResponseHeader) iter.Seq2[[]byte, []byte] {
	return trailers(h)
}

// trailerHeader is what request and response headers share of trailers.
type trailerHeader interface {
	TrailerHeader() []byte
	DelBytes(key []byte)
	AddTrailerBytes(key []byte) error
	AddBytesKV(key, value []byte)
}

func trailers(h trailerHeader) iter.Seq2[[]byte, []byte] {
	raw := h.TrailerHeader() // "name: value\r\n" each, then "\r\n"
	if len(raw) <= 2 {
		return func(func([]byte, []byte) bool) {}
	}
	raw = bytes.Clone(raw) // TrailerHeader's buffer is h's, reused
	return func(yield func([]byte, []byte) bool) {
		for line := range bytes.SplitSeq(raw, []byte("\r\n")) {
			k, v, ok := bytes.Cut(line, []byte(":"))
			if !ok || len(k) == 0 {
				continue
			}
			if !yield(k, bytes.TrimLeft(v, " \t")) {
				return
			}
		}
	}
}

// SetRequestTrailers replaces h's trailer section (what RequestTrailers
// reads, and what fasthttp writes after a chunked body) with fields. A
// field that may not be a trailer (RFC 9110 §6.5.1: framing, routing,
// authentication) is left out. The headers are not touched, unless one
// has the name of a trailer being replaced.
func SetRequestTrailers(h *fasthttp.RequestHeader, fields iter.Seq2[[]byte, []byte]) {
	setTrailers(h, fields)
}

// SetResponseTrailers is SetRequestTrailers for a response's trailer
// section (what fasthttp's server writes after a chunked body).
func SetResponseTrailers(h *fasthttp.ResponseHeader, fields iter.Seq2[[]byte, []byte]) {
	setTrailers(h, fields)
}

func setTrailers(h trailerHeader, fields iter.Seq2[[]byte, []byte]) {
	var old [][]byte
	for k := range trailers(h) {
		old = append(old, k)
	}
	for _, k := range old {
		h.DelBytes(k)
	}
	for k, v := range fields {
		if h.AddTrailerBytes(k) != nil {
			continue
		}
		h.AddBytesKV(k, v)
	}
}
