package wasm

import "encoding/binary"

// weft.stream_callbacks: a guest says which stream callbacks its filter for
// the stream being created needs, so the host does not enter the guest for
// the others (each entry into a Go guest costs more than the callback's own
// work when the SDK would only answer Continue). Called from
// proxy_on_context_create of a stream with one little-endian uint32 of
// callback bits (callbacks*); a cleared bit means: the guest would answer
// Continue (or, for log and done, do nothing) without looking at anything,
// so the host acts as if it had. The bits hold for this stream and for the
// streams of the same root context created in this VM after it, until the
// guest says otherwise. proxy_on_context_create and proxy_on_delete are
// called for every stream, except when a stream's filter declares
// callbackNoContext: the root's later streams are then neither created nor
// deleted in the guest (the stream declaring it was created, and is
// deleted).
const foreignStreamCallbacks = "weft.stream_callbacks"

// Callback bits of weft.stream_callbacks.
const (
	callbackRequestHeaders = 1 << iota
	callbackRequestBody
	callbackRequestTrailers
	callbackResponseHeaders
	callbackResponseBody
	callbackResponseTrailers
	callbackLog
	callbackDone

	callbacksAll = 1<<iota - 1

	// callbackNoContext: the guest keeps nothing per stream for this
	// root (one filter value serves every stream, and it never pauses a
	// stream but to answer it), so the root's later streams need no
	// proxy_on_context_create nor proxy_on_delete: the guest answers a
	// callback of a context it never saw with that value. Saves two of a
	// request-headers filter's three entries into a Go guest.
	callbackNoContext = 1 << 8

	// callbacksKnown are the bits the host reads.
	callbacksKnown = callbacksAll | callbackNoContext
)

// foreignSetStreamCallbacks is weft.stream_callbacks. Outside a stream's
// proxy_on_context_create it answers BadArgument: the bits belong to the
// stream the guest is creating.
func foreignSetStreamCallbacks(v *vm, args []byte) ([]byte, uint32) {
	f := v.cur
	if !v.inCreate() || f == nil || len(args) != 4 {
		return nil, statusBadArgument
	}
	bits := uint16(binary.LittleEndian.Uint32(args) & callbacksKnown)
	if bits&callbackRequestHeaders == 0 {
		// A create made with the request headers in one entry
		// (streamFilter.startLocked) ends after the create: the guest
		// does not want them. It goes on to them otherwise, as the host
		// would anyway.
		v.stopCombined()
	}
	// This stream was created: it is deleted too.
	f.callbacks = bits &^ callbackNoContext
	if r, ok := v.roots.Load(f.p.rootCtx); ok {
		rs := r.(*rootState)
		rs.callbacks, rs.callbacksSet = bits, true
	}
	return nil, statusOK
}

// streamCallbacks is what the streams of p's root context in v start with:
// what the guest said last (weft.stream_callbacks), or every callback.
// The caller holds v.mu.
func (v *vm) streamCallbacks(p *Plugin) uint16 {
	// Every stream asks: keep the root state found last (a VM serves one
	// plugin, or a few), instead of a sync.Map lookup per stream.
	rs := v.lastRoot
	if rs == nil || rs.p != p {
		r, ok := v.roots.Load(p.rootCtx)
		if !ok {
			return callbacksAll
		}
		rs = r.(*rootState)
		v.lastRoot = rs
	}
	if rs.callbacksSet {
		return rs.callbacks
	}
	return callbacksAll
}
