package sdk

import (
	"time"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// Proxy-Wasm map and buffer types of gRPC call-outs.
const (
	mapGRPCInitialMetadata  = 4
	mapGRPCTrailingMetadata = 5
	bufGRPCReceive          = 5
)

// GRPCStatus is a gRPC status code (0 OK, 14 UNAVAILABLE, ...) with its
// message.
type GRPCStatus struct {
	Code    uint32
	Message string
}

// GRPCStreamHandler receives what a gRPC stream opened with OpenGRPCStream
// sends back. Its methods run with the root context current (a stream
// they act on becomes current).
type GRPCStreamHandler interface {
	// OnGRPCMetadata gets the initial (trailing false) or trailing
	// (trailing true) metadata.
	OnGRPCMetadata(md [][2]string, trailing bool)
	// OnGRPCMessage gets one response message (protobuf bytes).
	OnGRPCMessage(msg []byte)
	// OnGRPCClose ends the stream with its status.
	OnGRPCClose(st GRPCStatus)
}

// grpcPending is a call or stream waiting for answers.
type grpcPending struct {
	call   func(msg []byte, st GRPCStatus) // unary
	stream GRPCStreamHandler
}

// DispatchGRPCCall makes a unary gRPC call to service/method on one of the
// proxy's clusters (which must speak HTTP/2); msg is the request message in
// protobuf wire form. cb gets the response message and an OK status, or a
// nil message and the failure's status; it runs later, with the calling
// root context current (a stream it acts on, e.g. with Resume or
// SendLocalResponse, becomes current). A zero timeout means 5s.
func DispatchGRPCCall(cluster, service, method string, metadata [][2]string, msg []byte, timeout time.Duration, cb func(msg []byte, st GRPCStatus)) (uint32, error) {
	md := abi.AppendPairs(nil, metadata)
	token, st := abi.GRPCCall(cluster, service, method, md, msg, uint32(timeout/time.Millisecond))
	if st != 0 {
		return 0, Status(st)
	}
	vm.grpc[token] = &grpcPending{call: cb}
	return token, nil
}

// GRPCStream is a gRPC stream opened with OpenGRPCStream.
type GRPCStream struct{ token uint32 }

// OpenGRPCStream opens a streaming gRPC call to service/method on one of
// the proxy's clusters; h gets what comes back.
func OpenGRPCStream(cluster, service, method string, metadata [][2]string, h GRPCStreamHandler) (*GRPCStream, error) {
	md := abi.AppendPairs(nil, metadata)
	token, st := abi.GRPCStream(cluster, service, method, md)
	if st != 0 {
		return nil, Status(st)
	}
	vm.grpc[token] = &grpcPending{stream: h}
	return &GRPCStream{token: token}, nil
}

// Send sends one message; end also ends the sending side.
func (s *GRPCStream) Send(msg []byte, end bool) error {
	if st := abi.GRPCSend(s.token, msg, end); st != 0 {
		return Status(st)
	}
	return nil
}

// CloseSend ends the sending side; answers keep coming.
func (s *GRPCStream) CloseSend() error {
	if st := abi.GRPCClose(s.token); st != 0 {
		return Status(st)
	}
	return nil
}

// Cancel ends the stream at once; its handler gets nothing more.
func (s *GRPCStream) Cancel() error {
	delete(vm.grpc, s.token)
	if st := abi.GRPCCancel(s.token); st != 0 {
		return Status(st)
	}
	return nil
}

// grpcEnter records the context the host called in (the root: the
// answers of call-outs belong to it); the callbacks' stream calls switch
// to their stream with set_effective_context.
func grpcEnter(ctx, token uint32) *grpcPending {
	enter(ctx)
	return vm.grpc[token]
}

func grpcMetadata(mt uint32) [][2]string {
	b, st := abi.GetHeaderMapPairs(mt)
	if st != 0 {
		return nil
	}
	md, _ := abi.ParsePairs(nil, b)
	return md
}

func onGRPCInitialMetadata(ctx, token, _ uint32) {
	if p := grpcEnter(ctx, token); p != nil && p.stream != nil {
		defer recoverRoot("OnGRPCMetadata")
		p.stream.OnGRPCMetadata(grpcMetadata(mapGRPCInitialMetadata), false)
	}
}

func onGRPCTrailingMetadata(ctx, token, _ uint32) {
	if p := grpcEnter(ctx, token); p != nil && p.stream != nil {
		defer recoverRoot("OnGRPCMetadata")
		p.stream.OnGRPCMetadata(grpcMetadata(mapGRPCTrailingMetadata), true)
	}
}

func onGRPCReceive(ctx, token, size uint32) {
	p := grpcEnter(ctx, token)
	if p == nil {
		return
	}
	msg, _ := abi.GetBufferBytes(bufGRPCReceive, 0, size)
	if msg == nil {
		msg = []byte{}
	}
	if p.call != nil {
		delete(vm.grpc, token) // a unary call's answer is its last word
		defer recoverRoot("gRPC call callback")
		p.call(msg, GRPCStatus{})
		return
	}
	if p.stream != nil {
		defer recoverRoot("OnGRPCMessage")
		p.stream.OnGRPCMessage(msg)
	}
}

func onGRPCClose(ctx, token, status uint32) {
	p := grpcEnter(ctx, token)
	if p == nil {
		return
	}
	delete(vm.grpc, token)
	code, msg, _ := abi.GetStatus()
	if code == 0 {
		code = status
	}
	st := GRPCStatus{Code: code, Message: string(msg)}
	switch {
	case p.call != nil:
		defer recoverRoot("gRPC call callback")
		p.call(nil, st)
	case p.stream != nil:
		defer recoverRoot("OnGRPCClose")
		p.stream.OnGRPCClose(st)
	}
}
