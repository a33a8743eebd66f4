// Package grpcsvc is the gRPC part of `weft demo`: a small gRPC server
// (grpc-go's test service, grpc.testing.TestService, answering from this
// package, beside grpc-go's health and reflection services) and the client
// calls the demo's tour and examples/demo/grpccall make through a sidecar.
//
// Every answer carries the header x-served-by with the server's name, so
// a caller sees which endpoint the sidecar picked. The reflection service
// lets grpcurl list and call the services with no .proto files.
//
// It is an example, not a library: nothing in the proxy or the control
// plane may import it.
package grpcsvc

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
)

// Service is the gRPC service the demo serves and its health checks ask
// about.
const Service = "grpc.testing.TestService"

// ServedBy is the response header naming the server that answered.
const ServedBy = "x-served-by"

// Server is one demo gRPC server on loopback (plaintext HTTP/2).
type Server struct {
	Name   string
	ln     net.Listener
	srv    *grpc.Server
	health *health.Server
	done   chan struct{}
}

// Start serves the demo services on 127.0.0.1 (any free port), SERVING.
func Start(name string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, ln: ln, srv: grpc.NewServer(), health: health.NewServer(), done: make(chan struct{})}
	testpb.RegisterTestServiceServer(s.srv, &testService{name: name})
	healthpb.RegisterHealthServer(s.srv, s.health)
	reflection.Register(s.srv)
	s.health.SetServingStatus(Service, healthpb.HealthCheckResponse_SERVING)
	go func() {
		_ = s.srv.Serve(ln)
		close(s.done)
	}()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetServing says through the health service whether Service serves.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(Service, st)
}

// Stop ends the server and its calls.
func (s *Server) Stop() {
	s.srv.Stop()
	<-s.done
}

// testService answers the test service's unary and server-streaming
// calls; the rest are grpc-go's Unimplemented answers.
type testService struct {
	testpb.UnimplementedTestServiceServer
	name string
}

func (t *testService) served(ctx context.Context) error {
	return grpc.SetHeader(ctx, metadata.Pairs(ServedBy, t.name))
}

func (t *testService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, t.served(ctx)
}

func (t *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := t.served(ctx); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: payload(req.GetResponseSize()), ServerId: t.name}, nil
}

func (t *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	if err := t.served(stream.Context()); err != nil {
		return err
	}
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
	}
	return nil
}

// payload is size bytes (at most 1 MiB) of the test service's
// COMPRESSABLE kind: zeros.
func payload(size int32) *testpb.Payload {
	size = min(max(size, 0), 1<<20)
	return &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, size)}
}

// Dial returns a client connection to addr (a sidecar) in plaintext
// HTTP/2, as gRPC clients on loopback talk to their sidecar.
func Dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Unary makes n UnaryCalls and counts the answers by the server that gave
// them.
func Unary(ctx context.Context, cc *grpc.ClientConn, n int) (map[string]int, error) {
	tc := testpb.NewTestServiceClient(cc)
	got := map[string]int{}
	for range n {
		var hdr metadata.MD
		resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 3}, grpc.Header(&hdr))
		if err != nil {
			return got, fmt.Errorf("UnaryCall: %w", err)
		}
		if len(resp.GetPayload().GetBody()) != 3 {
			return got, fmt.Errorf("UnaryCall: a payload of %d bytes, asked for 3", len(resp.GetPayload().GetBody()))
		}
		got[strings.Join(hdr.Get(ServedBy), ",")]++
	}
	return got, nil
}

// Stream makes one server-streaming call asking for n messages and returns
// how many arrived and who sent them.
func Stream(ctx context.Context, cc *grpc.ClientConn, n int) (int, string, error) {
	req := &testpb.StreamingOutputCallRequest{}
	for i := range n {
		req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(i + 1)})
	}
	stream, err := testpb.NewTestServiceClient(cc).StreamingOutputCall(ctx, req)
	if err != nil {
		return 0, "", fmt.Errorf("StreamingOutputCall: %w", err)
	}
	got := 0
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, "", fmt.Errorf("StreamingOutputCall after %d messages: %w", got, err)
		}
		got++
	}
	hdr, _ := stream.Header()
	return got, strings.Join(hdr.Get(ServedBy), ","), nil
}

// Check asks the health service about Service.
func Check(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: Service})
	if err != nil {
		return "", fmt.Errorf("Health/Check: %w", err)
	}
	return resp.GetStatus().String(), nil
}

// Counts prints a count map in key order: "grpc-a=5 grpc-b=5".
func Counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
