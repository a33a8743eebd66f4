package grpcload

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/bench/grpcupstream"
	"github.com/weftmesh/weft/bench/loadgen"
)

// Tests here assert counts the server can check (calls, messages,
// connections, streams), never a speed.

// counted is the gRPC upstream behind a listener and interceptors that
// count what it served.
type counted struct {
	url      string
	conns    atomic.Int64
	unary    atomic.Int64
	streams  atomic.Int64
	messages atomic.Int64 // sent on streams

	// holdConns, when not zero, holds each unary call until the server has
	// accepted that many connections (enough is then closed), or until the
	// call's deadline.
	holdConns int64
	enough    chan struct{}
}

type countingListener struct {
	net.Listener
	c *counted
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil && l.c.conns.Add(1) == l.c.holdConns {
		close(l.c.enough)
	}
	return conn, err
}

type countingStream struct {
	grpc.ServerStream
	n *atomic.Int64
}

func (s countingStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.n.Add(1)
	}
	return err
}

// startCounted starts a counted upstream; holdConns as in counted.
func startCounted(t *testing.T, holdConns int64) *counted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &counted{url: "http://" + ln.Addr().String() + "/", holdConns: holdConns, enough: make(chan struct{})}
	srv := grpcupstream.StartOn(countingListener{ln, c},
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod == "/grpc.testing.TestService/UnaryCall" {
				c.unary.Add(1)
			}
			if c.holdConns > 0 {
				select {
				case <-c.enough:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			c.streams.Add(1)
			return h(srv, countingStream{ss, &c.messages})
		}))
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func run(t *testing.T, cfg loadgen.Config) *loadgen.Result {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg.Client = c
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantAllOK(t *testing.T, res *loadgen.Result, n int64) {
	t.Helper()
	if res.Errors.Total() != 0 || res.Status.Non2xx() != 0 || res.Requests != n || res.Status.C2xx != n || res.Latency.TotalCount() != n {
		t.Fatalf("requests %d, errors %+v, statuses %+v, histogram %d: want %d answered OK",
			res.Requests, res.Errors, res.Status, res.Latency.TotalCount(), n)
	}
}

// Unary: Connections calls in flight on exactly Conns connections; every
// call the server answered is counted once, warm-up apart. The client
// dials a connection on its first call, so one fast worker could finish
// the run before another one calls; the server holds the calls until both
// connections are open, so every worker gets its turn however the
// goroutines are scheduled.
func TestUnarySharesConnsAndCountsEveryCall(t *testing.T) {
	up := startCounted(t, 2)
	res := run(t, loadgen.Config{
		Name: "unary", URL: up.url, Protocol: Unary, Connections: 8, Conns: 2, MessageSize: 64,
		Warmup: 20 * time.Millisecond, Duration: time.Minute, MaxRequests: 500,
	})
	wantAllOK(t, res, 500)
	if got := up.unary.Load(); got != res.Requests+res.WarmupRequests {
		t.Fatalf("server answered %d calls, generator counted %d+%d", got, res.Requests, res.WarmupRequests)
	}
	if got := up.conns.Load(); got != 2 {
		t.Fatalf("%d connections, want 2", got)
	}
}

// Stream: every worker's message goes on one stream and each answer is
// counted once.
func TestStreamUsesOneStream(t *testing.T) {
	up := startCounted(t, 0)
	res := run(t, loadgen.Config{
		Name: "stream", URL: up.url, Protocol: Stream, Connections: 16, MessageSize: 100,
		Warmup: 20 * time.Millisecond, Duration: time.Minute, MaxRequests: 2000,
	})
	wantAllOK(t, res, 2000)
	if got := up.messages.Load(); got != res.Requests+res.WarmupRequests {
		t.Fatalf("server sent %d messages, generator counted %d+%d", got, res.Requests, res.WarmupRequests)
	}
	if up.streams.Load() != 1 || up.conns.Load() != 1 {
		t.Fatalf("%d streams on %d connections, want 1 on 1", up.streams.Load(), up.conns.Load())
	}
}

// fakeService answers as a test directs.
type fakeService struct {
	testgrpc.UnimplementedTestServiceServer
	unary   func(*testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error)
	streams atomic.Int64
}

func (f *fakeService) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return f.unary(req)
}

// FullDuplexCall never answers on the first stream; later streams echo.
func (f *fakeService) FullDuplexCall(st testgrpc.TestService_FullDuplexCallServer) error {
	first := f.streams.Add(1) == 1
	for {
		req, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if first {
			continue
		}
		size := req.GetResponseParameters()[0].GetSize()
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

func startFake(t *testing.T, f *fakeService) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	if f != nil {
		testgrpc.RegisterTestServiceServer(srv, f)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return "http://" + ln.Addr().String() + "/"
}

func newClient(t *testing.T, url, protocol string) loadgen.Client {
	t.Helper()
	c, err := New(loadgen.Config{URL: url, Protocol: protocol, Connections: 2, Conns: 1, MessageSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A gRPC status counts as the HTTP status it maps to; an answer of the
// wrong size is an error, not a success.
func TestUnaryStatusesAndShortAnswers(t *testing.T) {
	var answer func(*testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error)
	url := startFake(t, &fakeService{unary: func(r *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) { return answer(r) }})
	c := newClient(t, url, Unary)
	for _, tc := range []struct {
		name   string
		answer func(*testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error)
		status int
		err    error
	}{
		{"ok", func(r *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
			return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, r.GetResponseSize())}}, nil
		}, 200, nil},
		{"unavailable", func(*testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
			return nil, status.Error(codes.Unavailable, "down")
		}, 503, nil},
		{"permission denied", func(*testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
			return nil, status.Error(codes.PermissionDenied, "no")
		}, 403, nil},
		{"short", func(*testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
			return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, 3)}}, nil
		}, 0, errShort},
	} {
		answer = tc.answer
		st, err := c.Do(0, 10*time.Second)
		if st != tc.status || !errors.Is(err, tc.err) {
			t.Errorf("%s: status %d, error %v; want %d, %v", tc.name, st, err, tc.status, tc.err)
		}
	}

	// No TestService at all: UNIMPLEMENTED, 501.
	bare := newClient(t, startFake(t, nil), Unary)
	if st, err := bare.Do(1, 10*time.Second); st != 501 || err != nil {
		t.Errorf("unimplemented: status %d, error %v; want 501", st, err)
	}
}

// A message whose answer does not come within the timeout is a timeout,
// and ends the stream: the next message goes on a new one.
func TestStreamTimeoutOpensANewStream(t *testing.T) {
	f := &fakeService{}
	c := newClient(t, startFake(t, f), Stream)
	_, err := c.Do(0, 50*time.Millisecond)
	var timeout interface{ Timeout() bool }
	if !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Fatalf("first message (never answered): %v, want a timeout", err)
	}
	for w := range 2 {
		if st, err := c.Do(w, 10*time.Second); st != 200 || err != nil {
			t.Fatalf("worker %d on the second stream: status %d, error %v", w, st, err)
		}
	}
	if n := f.streams.Load(); n != 2 {
		t.Fatalf("%d streams, want 2", n)
	}
}

// A reply left for a worker's earlier message gives way to the current one.
func TestDeliverReplacesStaleReply(t *testing.T) {
	ch := make(chan reply, 1)
	deliver(ch, reply{seq: 1})
	deliver(ch, reply{seq: 2})
	if r := <-ch; r.seq != 2 {
		t.Fatalf("got seq %d, want 2", r.seq)
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []loadgen.Config{
		{URL: "http://127.0.0.1:1/", Protocol: "grpc-bidi"},
		{URL: "no host", Protocol: Unary},
		{URL: "http://127.0.0.1:1/", Protocol: Stream, MessageSize: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if !Is(Unary) || !Is(Stream) || Is(loadgen.H2C) {
		t.Error("Is")
	}
}
