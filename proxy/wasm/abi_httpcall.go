package wasm

import (
	"bytes"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// httpCallFuncs: proxy_http_call.
func httpCallFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_http_call", host(proxyHTTPCall), params(10)},
	}
}

// defaultHTTPCallTimeout applies when the guest passes 0.
const defaultHTTPCallTimeout = 5 * time.Second

// proxy_http_call(cluster_ptr, cluster_len, headers_ptr, headers_len,
// body_ptr, body_len, trailers_ptr, trailers_len, timeout_ms, ret_token_ptr)
//
// The request goes out through Env.Upstream in the background; its answer
// is delivered with proxy_on_http_call_response to the calling context, on
// the same VM.
func proxyHTTPCall(v *vm, st []uint64) uint32 {
	cluster, ok1 := v.read(uint32(st[0]), uint32(st[1]))
	hdrs, ok2 := v.read(uint32(st[2]), uint32(st[3]))
	body, ok3 := v.read(uint32(st[4]), uint32(st[5]))
	_, ok4 := v.read(uint32(st[6]), uint32(st[7]))
	tokenPtr := uint32(st[9])
	if !ok1 || !ok2 || !ok3 || !ok4 || !v.writable(tokenPtr, 4) {
		return statusInvalidMemoryAccess
	}
	if v.p.env.Upstream == nil || len(cluster) == 0 {
		return statusBadArgument
	}
	pairs, ok := parseMap(v.pairs[:0], hdrs)
	v.pairs = pairs[:0]
	if !ok {
		return statusParseFailure
	}
	for _, kv := range pairs {
		// Envoy takes an empty :authority (the SDK's multiple_dispatches
		// example sends one); it becomes the cluster's name below.
		if len(kv[1]) == 0 && bytes.Equal(kv[0], pseudoAuthority) {
			continue
		}
		if err := checkPair(kv[0], kv[1], true); err != nil {
			return v.refuseWrite(err)
		}
	}
	req := fasthttp.AcquireRequest()
	var method, path, authority bool
	for _, kv := range pairs {
		k, val := kv[0], kv[1]
		switch {
		case bytes.Equal(k, pseudoMethod):
			req.Header.SetMethodBytes(val)
			method = true
		case bytes.Equal(k, pseudoPath):
			req.SetRequestURIBytes(val)
			path = true
		case bytes.Equal(k, pseudoAuthority):
			if len(val) == 0 {
				// HTTP/1.1 would send an empty Host (RFC 9112 §3.2); the
				// client refuses one, so the call names its cluster.
				val = cluster
			}
			req.Header.SetHostBytes(val)
			authority = true
		case len(k) > 0 && k[0] == ':':
		default:
			req.Header.AddBytesKV(k, val)
		}
	}
	if !method || !path || !authority {
		fasthttp.ReleaseRequest(req)
		return statusBadArgument
	}
	req.SetBody(body)
	timeout := time.Duration(uint32(st[8])) * time.Millisecond
	if timeout == 0 {
		timeout = defaultHTTPCallTimeout
	}
	token := v.nextToken
	v.nextToken++
	clusterName := string(cluster)
	p := v.p // the answer goes to this plugin's root context
	started := p.goAsync(func() { v.finishHTTPCall(p, clusterName, req, timeout, token) })
	if !started {
		fasthttp.ReleaseRequest(req)
		return statusInternalFailure
	}
	v.writeU32(tokenPtr, token)
	return statusOK
}

// finishHTTPCall sends the request and delivers the answer (a failed call
// is delivered as 0 headers, 0 body, as Envoy does). Like Envoy, the call
// belongs to the root context: proxy_on_http_call_response gets the root
// context id, and the SDKs find the calling stream by token and switch to
// it with proxy_set_effective_context.
func (v *vm) finishHTTPCall(p *Plugin, cluster string, req *fasthttp.Request, timeout time.Duration, token uint32) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	defer fasthttp.ReleaseRequest(req)
	err := p.env.Upstream.Do(cluster, req, resp, timeout)
	if err != nil {
		p.events.callouts[dispatchReason(err)].Add(1)
		p.log.Debug("wasm http call failed", zap.String("cluster", cluster), zap.String("dispatch_status", DispatchStatus(err)), zap.Error(err))
	}
	if v.onHTTPCallResp == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.broken || v.root(p) == nil {
		return
	}
	var nh, nb uint64
	if err == nil {
		v.callResp = resp
		nh = uint64(headers{resp: &resp.Header}.count())
		nb = uint64(len(resp.Body()))
	} else {
		v.callFailure = DispatchStatus(err)
	}
	v.enterRoot(p)
	_, cerr := v.invoke(v.onHTTPCallResp, uint64(p.rootCtx), uint64(token), nh, nb, 0)
	v.cur = nil
	v.callResp, v.callFailure = nil, ""
	if cerr != nil {
		v.breakLocked(fmt.Errorf("proxy_on_http_call_response: %w", cerr))
	}
}
