package wasm

import (
	"fmt"

	"github.com/weftmesh/weft/proxy/filter"
)

// What a filter writes into a stream is held to the listener's limits
// (filter.Stream.Limits): header bytes and fields per direction, and the
// size of a body it rewrites. A write past them is refused (BadArgument to
// the guest, nothing written) and fails the callback, so the plugin's
// failure policy decides the stream's fate; the event is counted as
// over_limits. Refusing at the write, not after the callback, is what
// bounds the sidecar's memory: the guest may repeat one small value from
// its memory a million times.

// addedHeaders is what a filter wrote into one direction's headers.
type addedHeaders struct {
	bytes, fields int
}

// headerFieldOverhead is a header field's framing on the wire (": " and
// CRLF), counted with its name and value.
const headerFieldOverhead = 4

// admitHeaders reports whether the stream's filter may write fields
// header fields of n bytes (names and values) into map mt; when it may
// not, the callback fails once it returns.
func (v *vm) admitHeaders(mt uint32, fields, n int) bool {
	f := v.cur
	if f == nil || f.s == nil {
		return true
	}
	dir := 0
	if mt == mapResponseHeaders || mt == mapResponseTrailers {
		dir = 1
	}
	a := &f.added[dir]
	lim := &f.s.Limits
	bytes, count := a.bytes+n+fields*headerFieldOverhead, a.fields+fields
	if (lim.MaxHeaderBytes > 0 && bytes > lim.MaxHeaderBytes) || (lim.MaxHeaders > 0 && count > lim.MaxHeaders) {
		if f.overLimits == nil {
			f.overLimits = fmt.Errorf("wasm filter %q: headers it wrote would exceed the listener's limits (%d bytes, %d fields; at most %d, %d)",
				f.p.spec.Name, bytes, count, lim.MaxHeaderBytes, lim.MaxHeaders)
		}
		return false
	}
	a.bytes, a.fields = bytes, count
	return true
}

// admitBody reports whether the stream's filter may make a body n bytes
// long; when it may not, the callback fails once it returns.
func (v *vm) admitBody(s *filter.Stream, n int) bool {
	f := v.cur
	if max := s.Limits.MaxBodyBytes; max > 0 && n > max {
		if f.overLimits == nil {
			f.overLimits = fmt.Errorf("wasm filter %q: a %d-byte body exceeds the listener's max_body_bytes %d", f.p.spec.Name, n, max)
		}
		return false
	}
	return true
}
