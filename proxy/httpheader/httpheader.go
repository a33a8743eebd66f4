// Package httpheader owns order-preserving edits of fasthttp header maps.
// fasthttp deletes a field by moving the last field into its slot, which
// reorders the rest; for fields that occur more than once (X-Forwarded-For,
// Via, Cache-Control, Set-Cookie) the order is part of the meaning (RFC 9110
// §5.3), so a proxy and its filters must delete and replace through here.
// It also owns the syntax checks (valid.go) that the listener applies to a
// client's request and the Wasm host to a filter's writes. It must not know
// anything about routing or filters.
package httpheader

import (
	"bytes"
	"iter"

	"github.com/valyala/fasthttp"
)

// header is what fasthttp's RequestHeader and ResponseHeader share, for the
// slow path.
type header interface {
	All() iter.Seq2[[]byte, []byte]
	DelBytes(key []byte)
	AddBytesKV(key, value []byte)
}

// DelRequest removes every field named key from a request. When no name
// occurs twice, fasthttp's own delete is used as is (moving distinct names
// around changes nothing); otherwise the remaining fields are re-added in
// their original order.
func DelRequest(h *fasthttp.RequestHeader, key []byte) {
	if h.PeekBytes(key) == nil {
		return
	}
	var names nameSet
	for k := range h.All() {
		if !bytes.EqualFold(k, key) && names.repeats(k) {
			rebuild(h, key, nil)
			return
		}
	}
	h.DelBytes(key)
}

// DelResponse is DelRequest for a response.
func DelResponse(h *fasthttp.ResponseHeader, key []byte) {
	if h.PeekBytes(key) == nil {
		return
	}
	var names nameSet
	for k := range h.All() {
		if !bytes.EqualFold(k, key) && names.repeats(k) {
			rebuild(h, key, nil)
			return
		}
	}
	h.DelBytes(key)
}

// SetRequest replaces the value of key in a request. A field that occurs
// once keeps its place; one that occurs several times is replaced by one
// field at the end, and the other fields keep their order.
func SetRequest(h *fasthttp.RequestHeader, key, value []byte) {
	n := 0
	for k := range h.All() {
		if bytes.EqualFold(k, key) {
			n++
		}
	}
	if n <= 1 {
		h.SetBytesKV(key, value)
		return
	}
	rebuild(h, key, value)
}

// SetResponse is SetRequest for a response.
func SetResponse(h *fasthttp.ResponseHeader, key, value []byte) {
	n := 0
	for k := range h.All() {
		if bytes.EqualFold(k, key) {
			n++
		}
	}
	if n <= 1 {
		h.SetBytesKV(key, value)
		return
	}
	rebuild(h, key, value)
}

// nameSet remembers up to 32 names without allocating.
type nameSet struct {
	names [32][]byte
	n     int
}

// repeats adds k and reports whether it was already there (or the set is
// full, which takes the safe, order-preserving path).
func (s *nameSet) repeats(k []byte) bool {
	for _, seen := range s.names[:s.n] {
		if bytes.EqualFold(seen, k) {
			return true
		}
	}
	if s.n == len(s.names) {
		return true
	}
	s.names[s.n] = k
	s.n++
	return false
}

// rebuild deletes every field, then adds back all but key in order, then
// key=value when value is not nil.
func rebuild(h header, key, value []byte) {
	type kv struct{ k, v []byte }
	var kept []kv
	var names [][]byte
	for k, v := range h.All() {
		names = append(names, append([]byte(nil), k...))
		if bytes.EqualFold(k, key) {
			continue
		}
		kept = append(kept, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
	}
	for _, n := range names {
		h.DelBytes(n)
	}
	for _, p := range kept {
		h.AddBytesKV(p.k, p.v)
	}
	if value != nil {
		h.AddBytesKV(key, value)
	}
}
