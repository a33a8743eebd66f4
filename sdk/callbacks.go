package sdk

import (
	"encoding/binary"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// The stream callbacks the SDK tells a Weft host it needs: the callbacks a
// stream's filter does not implement would only answer Continue, so the
// host skips them instead of entering the guest (weft.stream_callbacks,
// docs/wasm.md). proxy_on_context_create and proxy_on_delete always run.
// A connection of a tcp listener (a NetworkPlugin's context) declares
// nothing: the host calls every network callback, and a declaration made
// for it would change what the root's later HTTP streams start with.
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

	// callbackNoContext asks the host not to create nor delete a context
	// for the root's later streams: its StatelessFilter serves them.
	callbackNoContext = 1 << 8
)

const foreignStreamCallbacks = "weft.stream_callbacks"

// callbacksOf returns the callback bits f needs (none for a nil filter:
// the stream passes untouched).
func callbacksOf(f HTTPFilter) uint32 {
	if f == nil {
		return 0
	}
	var b uint32
	if _, ok := f.(RequestHeadersFilter); ok {
		b |= callbackRequestHeaders
	}
	if _, ok := f.(RequestBodyFilter); ok {
		b |= callbackRequestBody
	}
	if _, ok := f.(RequestTrailersFilter); ok {
		b |= callbackRequestTrailers
	}
	if _, ok := f.(ResponseHeadersFilter); ok {
		b |= callbackResponseHeaders
	}
	if _, ok := f.(ResponseBodyFilter); ok {
		b |= callbackResponseBody
	}
	if _, ok := f.(ResponseTrailersFilter); ok {
		b |= callbackResponseTrailers
	}
	if _, ok := f.(LogFilter); ok {
		b |= callbackLog
	}
	if _, ok := f.(DoneFilter); ok {
		b |= callbackDone
	}
	return b
}

// noCallbacksHost is set once the host answered that it has no
// weft.stream_callbacks (another host than Weft): it calls every callback.
var noCallbacksHost bool

var callbacksArg [4]byte

// declareCallbacks tells the host which callbacks the stream being created
// (a stream of root r) needs, when that differs from what r's streams
// declared last: the host keeps the last declaration of each root for the
// streams after it, so most streams need no host call.
func declareCallbacks(r *rootContext, bits uint32) {
	if noCallbacksHost || (r.declared && r.callbacks == bits) {
		return
	}
	binary.LittleEndian.PutUint32(callbacksArg[:], bits)
	_, st := abi.CallForeignFunction(foreignStreamCallbacks, callbacksArg[:])
	switch Status(st) {
	case StatusOK:
		r.callbacks, r.declared = bits, true
	case StatusNotFound, StatusUnimplemented:
		noCallbacksHost = true
	}
}
