// Package grpcupstream is the benchmark's gRPC upstream: grpc-go serving
// the interop TestService's UnaryCall and FullDuplexCall (the calls the
// gRPC scenarios load, answered with a payload of the size asked for and
// nothing else) and the standard health service, over plaintext HTTP/2.
package grpcupstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// MaxMessageSize bounds the payload a call may ask for.
const MaxMessageSize = 1 << 20

// Server is a running gRPC upstream.
type Server struct {
	ln     net.Listener
	srv    *grpc.Server
	served chan error
}

// Start listens on addr ("127.0.0.1:0" when empty) and serves until Close.
func Start(addr string) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpc upstream: listen %s: %w", addr, err)
	}
	return StartOn(ln), nil
}

// StartOn serves on ln (with opts, e.g. interceptors) until Close.
func StartOn(ln net.Listener, opts ...grpc.ServerOption) *Server {
	srv := grpc.NewServer(opts...)
	Register(srv)
	s := &Server{ln: ln, srv: srv, served: make(chan error, 1)}
	go func() { s.served <- srv.Serve(ln) }()
	return s
}

// Register registers the upstream's services (TestService, health) on srv.
func Register(srv *grpc.Server) {
	testgrpc.RegisterTestServiceServer(srv, &testService{payload: make([]byte, MaxMessageSize)})
	healthpb.RegisterHealthServer(srv, health.NewServer())
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, ending the calls in flight.
func (s *Server) Close() error {
	s.srv.Stop()
	if err := <-s.served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc upstream: %w", err)
	}
	return nil
}

// Serve runs an upstream on addr until ctx is done; ready, when set, is
// called with the address once it listens.
func Serve(ctx context.Context, addr string, ready func(addr string)) error {
	s, err := Start(addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(s.Addr())
	}
	select {
	case <-ctx.Done():
		return s.Close()
	case err := <-s.served:
		s.served <- err
		return s.Close()
	}
}

// WaitReady calls the health service at addr until it answers SERVING, or
// fails after timeout (or when ctx is done).
func WaitReady(ctx context.Context, addr string, timeout time.Duration) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("health: %s", resp.GetStatus())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("grpc upstream %s not ready within %s: %w", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// testService answers UnaryCall and FullDuplexCall with payloads of the
// sizes asked for (slices of one shared zero buffer).
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	payload []byte
}

func (s *testService) body(size int32) ([]byte, error) {
	if size < 0 || size > MaxMessageSize {
		return nil, status.Errorf(codes.InvalidArgument, "response size %d: want 0..%d", size, MaxMessageSize)
	}
	return s.payload[:size], nil
}

// UnaryCall answers with a payload of req.ResponseSize bytes.
func (s *testService) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b, err := s.body(req.GetResponseSize())
	if err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: b}}, nil
}

// FullDuplexCall answers every request message, in order, with one
// message per entry of its ResponseParameters (of that entry's size),
// until the client closes its side.
func (s *testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range req.GetResponseParameters() {
			b, err := s.body(p.GetSize())
			if err != nil {
				return err
			}
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: b}}); err != nil {
				return err
			}
		}
	}
}
