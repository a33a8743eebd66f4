package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// grpcFuncs: gRPC call-outs (proxy_grpc_call for a unary call,
// proxy_grpc_stream with proxy_grpc_send for a stream, proxy_grpc_cancel,
// proxy_grpc_close) to a cluster of the config in force, over the
// cluster's HTTP/2 transport; and proxy_call_foreign_function, which
// dispatches to the registry of abi_foreign.go (unknown names answer
// NotFound, as in Envoy).
//
// As in Envoy, the answers belong to the root context: a unary call gets
// proxy_on_grpc_receive with the response message when it succeeds, or
// proxy_on_grpc_close with its status when it fails; a stream gets
// proxy_on_grpc_receive_initial_metadata, proxy_on_grpc_receive per
// message, proxy_on_grpc_receive_trailing_metadata and proxy_on_grpc_close.
// A cancelled call or stream gets no further callback.
func grpcFuncs() []abiFunc {
	foreign := newForeignRegistry()
	return []abiFunc{
		{"proxy_grpc_call", host(proxyGRPCCall), params(12)},
		{"proxy_grpc_stream", host(proxyGRPCStream), params(9)},
		{"proxy_grpc_send", host(proxyGRPCSend), params(4)},
		{"proxy_grpc_cancel", host(proxyGRPCCancel), params(1)},
		{"proxy_grpc_close", host(proxyGRPCClose), params(1)},
		{"proxy_call_foreign_function", host(foreign.call), params(6)},
	}
}

// StreamUpstream is the part of Upstream gRPC call-outs need: a request
// whose body streams, sent over HTTP/2 to one of the cluster's endpoints.
type StreamUpstream interface {
	Stream(cluster string, req *http.Request) (*http.Response, error)
}

// gRPC status codes the host itself reports.
const (
	grpcStatusOK          = 0
	grpcStatusCancelled   = 1
	grpcStatusUnknown     = 2
	grpcStatusInternal    = 13
	grpcStatusUnavailable = 14
)

// defaultGRPCCallTimeout bounds a unary call whose guest passed 0.
const defaultGRPCCallTimeout = 5 * time.Second

// maxGRPCMessage bounds one message a call-out receives.
const maxGRPCMessage = 4 << 20

// grpcCall is one call or stream in flight; calls lives in vm.grpcCalls
// (guarded by vm.mu).
type grpcCall struct {
	// p is the plugin whose context made the call: its root context hears
	// the callbacks (VMs may be shared).
	p      *Plugin
	stream bool
	cancel context.CancelFunc
	// out feeds a stream's request body (framed messages); closed on
	// end_stream, close or cancel. Every use holds vm.mu (host calls and
	// the callbacks' delivery), which guards the flags below.
	out        chan []byte
	sendClosed bool // (vm.mu) out is closed
	cancelled  bool // (vm.mu) no more callbacks
}

// closeSend ends the sending side once. The caller holds vm.mu.
func (c *grpcCall) closeSend() {
	if c.out != nil && !c.sendClosed {
		c.sendClosed = true
		close(c.out)
	}
}

// grpcState is what the gRPC callbacks read through the ABI: the message
// (buffer GrpcReceiveBuffer), the metadata maps and proxy_get_status.
type grpcState struct {
	recv    []byte
	meta    *fasthttp.ResponseHeader // initial or trailing metadata
	metaMap uint32
	code    uint32
	msg     []byte
}

// proxy_grpc_call(service_ptr, service_len, service_name_ptr,
// service_name_len, method_ptr, method_len, metadata_ptr, metadata_len,
// message_ptr, message_len, timeout_ms, ret_token_ptr)
func proxyGRPCCall(v *vm, st []uint64) uint32 {
	msg, ok := v.read(uint32(st[8]), uint32(st[9]))
	if !ok || !v.writable(uint32(st[11]), 4) {
		return statusInvalidMemoryAccess
	}
	timeout := time.Duration(uint32(st[10])) * time.Millisecond
	if timeout == 0 {
		timeout = defaultGRPCCallTimeout
	}
	return v.grpcStart(st, false, grpcFrame(nil, msg), timeout, uint32(st[11]))
}

// proxy_grpc_stream(service_ptr, service_len, service_name_ptr,
// service_name_len, method_ptr, method_len, metadata_ptr, metadata_len,
// ret_token_ptr)
func proxyGRPCStream(v *vm, st []uint64) uint32 {
	if !v.writable(uint32(st[8]), 4) {
		return statusInvalidMemoryAccess
	}
	return v.grpcStart(st, true, nil, 0, uint32(st[8]))
}

// grpcStart checks and starts a call-out: st[0:8] name the cluster,
// service, method and metadata.
func (v *vm) grpcStart(st []uint64, stream bool, body []byte, timeout time.Duration, tokenPtr uint32) uint32 {
	svc, ok1 := v.read(uint32(st[0]), uint32(st[1]))
	service, ok2 := v.read(uint32(st[2]), uint32(st[3]))
	method, ok3 := v.read(uint32(st[4]), uint32(st[5]))
	md, ok4 := v.read(uint32(st[6]), uint32(st[7]))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return statusInvalidMemoryAccess
	}
	up, _ := v.p.env.Upstream.(StreamUpstream)
	cluster := grpcCluster(svc)
	if up == nil || cluster == "" || len(service) == 0 || len(method) == 0 ||
		bytes.ContainsAny(service, "/ ") || bytes.ContainsAny(method, "/ ") {
		return statusBadArgument
	}
	pairs, ok := parseMap(v.pairs[:0], md)
	v.pairs = pairs[:0]
	if !ok {
		return statusParseFailure
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	c := &grpcCall{stream: stream, cancel: cancel}
	var reqBody io.Reader = bytes.NewReader(body)
	if stream {
		c.out = make(chan []byte, 128)
		pr, pw := io.Pipe()
		reqBody = pr
		go func() {
			for b := range c.out {
				if _, err := pw.Write(b); err != nil {
					break
				}
			}
			_ = pw.Close()
		}()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cluster+"/"+string(service)+"/"+string(method), reqBody)
	if err != nil {
		cancel()
		c.closeSend()
		return statusBadArgument
	}
	if !stream {
		req.ContentLength = int64(len(body))
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	if timeout > 0 {
		req.Header.Set("grpc-timeout", strconv.FormatInt(timeout.Milliseconds(), 10)+"m")
	}
	for _, kv := range pairs {
		if len(kv[0]) > 0 && kv[0][0] == ':' {
			continue
		}
		req.Header.Add(string(kv[0]), string(kv[1]))
	}
	token := v.nextToken
	v.nextToken++
	if v.grpcCalls == nil {
		v.grpcCalls = make(map[uint32]*grpcCall)
	}
	v.grpcCalls[token] = c
	c.p = v.p
	stop := v.p.stop
	started := v.p.goAsync(func() {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-stop: // the plugin is closing: end the call
				cancel()
			case <-done:
			}
		}()
		defer cancel()
		v.runGRPC(up, cluster, req, token, c)
	})
	if !started {
		delete(v.grpcCalls, token)
		cancel()
		c.closeSend()
		return statusInternalFailure
	}
	v.writeU32(tokenPtr, token)
	return statusOK
}

// grpcCluster reads the call's target: a cluster name, or Envoy's
// serialized GrpcService with envoy_grpc.cluster_name (what SDKs built for
// Envoy may send).
func grpcCluster(svc []byte) string {
	if len(svc) > 2 && svc[0] == 0x0a { // field 1 (envoy_grpc), length-delimited
		if n, k := binary.Uvarint(svc[1:]); k > 0 && int(n) <= len(svc)-1-k {
			inner := svc[1+k : 1+k+int(n)]
			if len(inner) > 2 && inner[0] == 0x0a {
				if m, j := binary.Uvarint(inner[1:]); j > 0 && int(m) <= len(inner)-1-j {
					return string(inner[1+j : 1+j+int(m)])
				}
			}
		}
	}
	if bytes.ContainsAny(svc, "\x00/ \n") {
		return ""
	}
	return string(svc)
}

// grpcFrame appends msg with gRPC's length prefix (uncompressed).
func grpcFrame(dst, msg []byte) []byte {
	var h [5]byte
	binary.BigEndian.PutUint32(h[1:], uint32(len(msg)))
	return append(append(dst, h[:]...), msg...)
}

// runGRPC sends the call and delivers what comes back.
func (v *vm) runGRPC(up StreamUpstream, cluster string, req *http.Request, token uint32, c *grpcCall) {
	resp, err := up.Stream(cluster, req)
	if err != nil {
		c.p.log.Debug("wasm grpc call-out failed", zap.String("cluster", cluster), zap.Error(err))
		code := uint32(grpcStatusUnavailable)
		if errors.Is(err, context.Canceled) {
			code = grpcStatusCancelled
		}
		v.grpcDeliver(token, c, v.onGRPCClose, grpcState{code: code, msg: []byte(err.Error())}, true)
		return
	}
	defer resp.Body.Close()
	// A trailers-only answer has its status in the headers.
	if code, msg, ok := grpcStatusOf(resp.Header); ok || resp.StatusCode != http.StatusOK {
		if !ok {
			code, msg = grpcStatusUnknown, "HTTP status "+strconv.Itoa(resp.StatusCode)
		}
		if c.stream && ok {
			v.grpcDeliver(token, c, v.onGRPCInitialMeta, grpcState{meta: metaOf(resp.Header), metaMap: mapGrpcInitialMeta}, false)
		}
		v.grpcDeliver(token, c, v.onGRPCClose, grpcState{code: code, msg: []byte(msg)}, true)
		return
	}
	if c.stream {
		v.grpcDeliver(token, c, v.onGRPCInitialMeta, grpcState{meta: metaOf(resp.Header), metaMap: mapGrpcInitialMeta}, false)
	}
	var unary []byte
	for {
		msg, err := readGRPCMessage(resp.Body)
		if err == io.EOF {
			break
		}
		if err != nil {
			code := uint32(grpcStatusInternal)
			if req.Context().Err() != nil {
				code = grpcStatusCancelled
				if errors.Is(req.Context().Err(), context.DeadlineExceeded) {
					code = 4 // DEADLINE_EXCEEDED
				}
			}
			v.grpcDeliver(token, c, v.onGRPCClose, grpcState{code: code, msg: []byte(err.Error())}, true)
			return
		}
		if c.stream {
			v.grpcDeliver(token, c, v.onGRPCReceive, grpcState{recv: msg}, false)
		} else if unary == nil {
			unary = msg
		}
	}
	code, smsg, ok := grpcStatusOf(resp.Trailer)
	if !ok {
		code, smsg = grpcStatusInternal, "the server sent no grpc-status"
	}
	if c.stream {
		if len(resp.Trailer) > 0 {
			v.grpcDeliver(token, c, v.onGRPCTrailingMeta, grpcState{meta: metaOf(resp.Trailer), metaMap: mapGrpcTrailingMeta}, false)
		}
		v.grpcDeliver(token, c, v.onGRPCClose, grpcState{code: code, msg: []byte(smsg)}, true)
		return
	}
	if code == grpcStatusOK && unary != nil {
		v.grpcDeliver(token, c, v.onGRPCReceive, grpcState{recv: unary}, true)
		return
	}
	if code == grpcStatusOK {
		code, smsg = grpcStatusInternal, "the server sent no response message"
	}
	v.grpcDeliver(token, c, v.onGRPCClose, grpcState{code: code, msg: []byte(smsg)}, true)
}

// readGRPCMessage reads one length-prefixed message.
func readGRPCMessage(r io.Reader) ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, errors.New("grpc: truncated message header")
		}
		return nil, err
	}
	if h[0] != 0 {
		return nil, errors.New("grpc: compressed messages are not supported in call-outs")
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxGRPCMessage {
		return nil, fmt.Errorf("grpc: message of %d bytes is over the %d-byte limit", n, maxGRPCMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, errors.New("grpc: truncated message")
	}
	return msg, nil
}

func grpcStatusOf(h http.Header) (uint32, string, bool) {
	v := h.Get("grpc-status")
	if v == "" {
		return 0, "", false
	}
	code, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return grpcStatusUnknown, "bad grpc-status " + v, true
	}
	return uint32(code), h.Get("grpc-message"), true
}

func metaOf(h http.Header) *fasthttp.ResponseHeader {
	m := &fasthttp.ResponseHeader{}
	m.SetNoDefaultContentType(true)
	m.DisableNormalizing()
	for k, vs := range h {
		lk := strings.ToLower(k)
		for _, val := range vs {
			m.Add(lk, val)
		}
	}
	return m
}

// grpcDeliver runs one callback of a call on the root context, unless the
// call was cancelled or the VM broke. last removes the call.
func (v *vm) grpcDeliver(token uint32, c *grpcCall, g *guestFunc, s grpcState, last bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if last {
		if v.grpcCalls[token] == c {
			delete(v.grpcCalls, token)
		}
		c.closeSend()
	}
	if c.cancelled || v.broken || g == nil || v.root(c.p) == nil {
		return
	}
	v.enterRoot(c.p)
	v.grpc = &s
	var err error
	switch g {
	case v.onGRPCReceive:
		_, err = v.invoke(g, uint64(c.p.rootCtx), uint64(token), uint64(len(s.recv)))
	case v.onGRPCClose:
		_, err = v.invoke(g, uint64(c.p.rootCtx), uint64(token), uint64(s.code))
	default: // metadata
		_, err = v.invoke(g, uint64(c.p.rootCtx), uint64(token), uint64(headers{resp: s.meta, trailer: true}.count()))
	}
	v.grpc = nil
	if err != nil {
		v.breakLocked(fmt.Errorf("gRPC call-out callback: %w", err))
	}
}

// proxy_grpc_send(token, message_ptr, message_len, end_stream)
func proxyGRPCSend(v *vm, st []uint64) uint32 {
	msg, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	c := v.grpcCalls[uint32(st[0])]
	if c == nil || !c.stream {
		return statusNotFound
	}
	if len(msg) > 0 || uint32(st[3]) == 0 {
		if !c.sendFrame(grpcFrame(nil, msg)) {
			return statusBadArgument // the stream's sending side is closed
		}
	}
	if uint32(st[3]) != 0 {
		c.closeSend()
	}
	return statusOK
}

// sendFrame queues a framed message; false when the sending side is
// closed or more than 128 messages wait (the guest should slow down). The
// caller holds vm.mu.
func (c *grpcCall) sendFrame(b []byte) bool {
	if c.sendClosed {
		return false
	}
	select {
	case c.out <- b:
		return true
	default:
		return false
	}
}

// proxy_grpc_cancel(token): end the call or stream now; no more callbacks.
func proxyGRPCCancel(v *vm, st []uint64) uint32 {
	token := uint32(st[0])
	c := v.grpcCalls[token]
	if c == nil {
		return statusNotFound
	}
	c.cancelled = true
	delete(v.grpcCalls, token)
	c.cancel()
	c.closeSend()
	return statusOK
}

// proxy_grpc_close(token): a stream's sending side ends (the answers keep
// coming); a unary call is cancelled.
func proxyGRPCClose(v *vm, st []uint64) uint32 {
	c := v.grpcCalls[uint32(st[0])]
	if c == nil {
		return statusNotFound
	}
	if !c.stream {
		return proxyGRPCCancel(v, st)
	}
	c.closeSend()
	return statusOK
}

// cancelGRPCLocked ends every call-out of a VM that broke or shut down.
// The caller holds v.mu.
func (v *vm) cancelGRPCLocked() {
	for token, c := range v.grpcCalls {
		c.cancelled = true
		c.cancel()
		c.closeSend()
		delete(v.grpcCalls, token)
	}
}
