package wasm

import (
	"strconv"
)

// streamFuncs: stream control, local responses, effective context, done,
// status.
func streamFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_continue_stream", host(proxyContinueStream), params(1)},
		{"proxy_close_stream", host(proxyCloseStream), params(1)},
		{"proxy_continue_request", host(proxyContinueRequest), nil},
		{"proxy_continue_response", host(proxyContinueResponse), nil},
		{"proxy_clear_route_cache", host(proxyClearRouteCache), nil},
		{"proxy_send_local_response", host(proxySendLocalResponse), params(8)},
		{"proxy_set_effective_context", host(proxySetEffectiveContext), params(1)},
		{"proxy_done", host(proxyDone), nil},
		{"proxy_get_status", host(proxyGetStatus), params(3)},
	}
}

// resume ends a pause of the current stream context.
func (v *vm) resume(streamType uint32, outcome uint8) uint32 {
	f := v.cur
	if f == nil {
		return statusNotFound
	}
	switch streamType {
	case streamTypeHTTPRequest, streamTypeHTTPResponse:
	case streamTypeDownstream, streamTypeUpstream:
		if f.net == nil {
			return statusBadArgument
		}
		// A network context: close ends the connection; a continue lets
		// held bytes go with the next read (network.go).
		if outcome == outcomeClose {
			f.net.closeConn = true
		}
		return statusOK
	default:
		return statusBadArgument
	}
	f.wakeLocked(outcome)
	return statusOK
}

// proxy_continue_stream(stream_type)
func proxyContinueStream(v *vm, st []uint64) uint32 {
	return v.resume(uint32(st[0]), outcomeContinue)
}

// proxy_close_stream(stream_type)
func proxyCloseStream(v *vm, st []uint64) uint32 {
	return v.resume(uint32(st[0]), outcomeClose)
}

// proxy_continue_request() (0.1.0)
func proxyContinueRequest(v *vm, _ []uint64) uint32 {
	return v.resume(streamTypeHTTPRequest, outcomeContinue)
}

// proxy_continue_response() (0.1.0)
func proxyContinueResponse(v *vm, _ []uint64) uint32 {
	return v.resume(streamTypeHTTPResponse, outcomeContinue)
}

// proxy_clear_route_cache() (0.1.0): routes are chosen after the request
// filters have run, so there is nothing to clear.
func proxyClearRouteCache(*vm, []uint64) uint32 { return statusOK }

// proxy_send_local_response(status, details_ptr, details_len, body_ptr,
// body_len, headers_ptr, headers_len, grpc_status)
func proxySendLocalResponse(v *vm, st []uint64) uint32 {
	f := v.cur
	status := uint32(st[0])
	details, ok1 := v.read(uint32(st[1]), uint32(st[2]))
	body, ok2 := v.read(uint32(st[3]), uint32(st[4]))
	hdrs, ok3 := v.read(uint32(st[5]), uint32(st[6]))
	if !ok1 || !ok2 || !ok3 {
		return statusInvalidMemoryAccess
	}
	if f == nil {
		return statusNotFound
	}
	if status < 100 || status > 999 {
		return statusBadArgument
	}
	pairs, ok := parseMap(v.pairs[:0], hdrs)
	v.pairs = pairs[:0]
	if !ok {
		return statusParseFailure
	}
	for _, kv := range pairs {
		if err := checkPair(kv[0], kv[1], false); err != nil {
			return v.refuseWrite(err)
		}
	}
	lr := &f.local
	lr.status = int(status)
	lr.details = append(lr.details[:0], details...)
	lr.body = append(lr.body[:0], body...)
	lr.headers = lr.headers[:0]
	for _, kv := range pairs {
		lr.headers = append(lr.headers, [2]string{string(kv[0]), string(kv[1])})
	}
	if g := int32(uint32(st[7])); g >= 0 && g <= 16 {
		lr.headers = append(lr.headers, [2]string{"grpc-status", strconv.Itoa(int(g))})
	}
	f.wakeLocked(outcomeLocalReply)
	return statusOK
}

// proxy_set_effective_context(ctx): later calls act on that context.
func proxySetEffectiveContext(v *vm, st []uint64) uint32 {
	id := uint32(st[0])
	if r, ok := v.roots.Load(id); ok {
		v.enterRoot(r.(*rootState).p)
		return statusOK
	}
	f := v.contexts.get(id)
	if f == nil {
		return statusBadArgument
	}
	v.enterStream(f)
	return statusOK
}

// proxy_done(): a context the guest held open after on_done may go; the
// host deletes contexts right after on_done anyway.
func proxyDone(*vm, []uint64) uint32 { return statusOK }

// proxy_get_status(ret_code_ptr, ret_msg_ptr_ptr, ret_msg_len_ptr): the
// gRPC status (and message) of the call-out whose proxy_on_grpc_close runs
// now; OK and empty elsewhere.
func proxyGetStatus(v *vm, st []uint64) uint32 {
	var code uint32
	var msg []byte
	if g := v.grpc; g != nil {
		code, msg = g.code, g.msg
	}
	if !v.writeU32(uint32(st[0]), code) {
		return statusInvalidMemoryAccess
	}
	return v.copyOut(msg, uint32(st[1]), uint32(st[2]))
}
