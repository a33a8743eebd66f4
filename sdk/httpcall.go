package sdk

import (
	"errors"
	"strconv"
	"time"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// ErrCallFailed is HTTPCallResponse.Err when the host could not get an
// answer (no such cluster, connection refused, timeout).
var ErrCallFailed = errors.New("sdk: http call failed")

// HTTPCallResponse is the answer to DispatchHTTPCall.
type HTTPCallResponse struct {
	// Status is the HTTP status (from :status); 0 when Err is set.
	Status int
	// Headers are the response headers, :status included.
	Headers [][2]string
	// Body is the whole response body.
	Body []byte
	// Err is ErrCallFailed when there is no answer.
	Err error
	// Reason says why there is no answer, when the host tells
	// (:dispatch_status in weft): timeout, connect_failure, no_cluster,
	// no_healthy_endpoint, reset or failure. Empty on a host that does not.
	Reason string
}

// Header returns the first value of name in the answer.
func (r *HTTPCallResponse) Header(name string) (string, bool) {
	for _, h := range r.Headers {
		if h[0] == name {
			return h[1], true
		}
	}
	return "", false
}

// DispatchHTTPCall sends a request to one of the proxy's clusters. headers
// must include :method, :path and :authority. The answer comes later, in
// its own callback: cb runs then (the stream that made the call is the
// current context, so cb may Resume it). With a nil cb the answer goes to
// the calling context's HTTPCallReceiver. It returns the call's token.
func DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeout time.Duration, cb func(*HTTPCallResponse)) (uint32, error) {
	ctx := vm.effective
	hdrs := abi.AppendPairs(nil, headers)
	ms := uint32(timeout / time.Millisecond)
	token, st := abi.HTTPCall(cluster, hdrs, body, nil, ms)
	if st != 0 {
		return 0, Status(st)
	}
	vm.calls[token] = pendingCall{ctx: ctx, cb: cb}
	if s := vm.streams.get(ctx); s != nil {
		s.calls++
	}
	return token, nil
}

// DispatchPluginHTTPCall is DispatchHTTPCall made on behalf of the plugin
// (the root context) even from a stream's callback: the answer arrives
// even if the stream that triggered the call is gone by then (e.g. a key
// fetch several streams wait for). cb runs with the root context current;
// resume waiting streams with Stream.Resume.
func DispatchPluginHTTPCall(cluster string, headers [][2]string, body []byte, timeout time.Duration, cb func(*HTTPCallResponse)) (uint32, error) {
	if r := vm.streams.get(vm.effective); r != nil {
		activate(r.s.root)
	}
	return DispatchHTTPCall(cluster, headers, body, timeout, cb)
}

func onHTTPCallResponse(ctx, token, numHeaders, bodySize, numTrailers uint32) {
	enter(ctx)
	c, ok := vm.calls[token]
	if !ok {
		return
	}
	delete(vm.calls, token)
	s := vm.streams.get(ctx)
	if s != nil {
		s.calls--
	}
	resp := &HTTPCallResponse{}
	if numHeaders == 0 {
		resp.Err = ErrCallFailed
		if b, st := abi.GetHeaderMapPairs(mapHTTPCallRespHeaders); st == 0 {
			failed, _ := abi.ParsePairs(nil, b)
			for _, h := range failed {
				if h[0] == ":dispatch_status" {
					resp.Reason = h[1]
				}
			}
		}
	} else {
		if b, st := abi.GetHeaderMapPairs(mapHTTPCallRespHeaders); st == 0 {
			resp.Headers, _ = abi.ParsePairs(nil, b)
		}
		if v, ok := resp.Header(":status"); ok {
			resp.Status, _ = strconv.Atoi(v)
		}
		if bodySize > 0 {
			resp.Body, _ = abi.GetBufferBytes(bufHTTPCallRespBody, 0, bodySize)
		}
	}
	switch {
	case c.cb != nil:
		defer recoverRoot("http call callback")
		c.cb(resp)
	case s != nil:
		if r, ok := s.filter.(HTTPCallReceiver); ok {
			defer recoverRoot("OnHTTPCallResponse")
			r.OnHTTPCallResponse(token, resp)
		}
	default:
		if r := vm.roots[ctx]; r != nil {
			if rc, ok := r.plugin.(HTTPCallReceiver); ok {
				defer recoverRoot("OnHTTPCallResponse")
				rc.OnHTTPCallResponse(token, resp)
			}
		}
	}
}
