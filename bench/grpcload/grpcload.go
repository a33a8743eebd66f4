// Package grpcload is the benchmark's gRPC load: a loadgen.Client that
// makes grpc-go calls to the TestService of bench/grpcupstream (or any
// server of grpc-go's interop TestService), so that loadgen's closed and
// open loops, histograms and measure hooks apply unchanged.
//
//   - Unary: worker w calls UnaryCall on connection w % Conns; Connections
//     calls in flight share Conns HTTP/2 connections.
//   - Stream: one FullDuplexCall stream on one connection; each worker's
//     request is one message sent on it and answered by one message, so
//     Connections messages are in flight on the single stream and the
//     latency is per message.
//
// gRPC status OK counts as HTTP 200, DEADLINE_EXCEEDED as a timeout, and
// the other codes as the HTTP status grpc-gateway maps them to (so a
// report's status classes show them): UNAVAILABLE 503, UNIMPLEMENTED 501,
// INTERNAL and UNKNOWN 500, and so on.
package grpcload

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/bench/loadgen"
)

// Protocols (loadgen.Config.Protocol) this package serves.
const (
	Unary  = "grpc-unary"
	Stream = "grpc-stream"
)

// Is reports whether protocol is one of this package's.
func Is(protocol string) bool { return protocol == Unary || protocol == Stream }

// New returns the client cfg.Protocol names, for cfg.URL's host:port,
// sending and asking back cfg.MessageSize bytes per call or message. No
// connection is made before the first call.
func New(cfg loadgen.Config) (loadgen.Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("grpcload %q: url %q: want http://host:port", cfg.Name, cfg.URL)
	}
	if cfg.MessageSize < 0 {
		return nil, fmt.Errorf("grpcload %q: message size %d: must not be negative", cfg.Name, cfg.MessageSize)
	}
	body := make([]byte, cfg.MessageSize)
	switch cfg.Protocol {
	case Unary:
		n := cfg.Conns
		if n <= 0 {
			n = loadgen.DefaultConns
		}
		if cfg.Connections > 0 {
			n = min(n, cfg.Connections)
		}
		c := &unaryClient{size: int32(cfg.MessageSize),
			req: &testgrpc.SimpleRequest{ResponseSize: int32(cfg.MessageSize), Payload: &testgrpc.Payload{Body: body}}}
		for range n {
			cc, err := dial(u.Host)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("grpcload %q: %w", cfg.Name, err)
			}
			c.conns = append(c.conns, cc)
			c.clients = append(c.clients, testgrpc.NewTestServiceClient(cc))
		}
		return c, nil
	case Stream:
		cc, err := dial(u.Host)
		if err != nil {
			return nil, fmt.Errorf("grpcload %q: %w", cfg.Name, err)
		}
		workers := max(cfg.Connections, loadgen.DefaultConnections)
		c := &streamClient{cc: cc, tc: testgrpc.NewTestServiceClient(cc), size: cfg.MessageSize,
			req: &testgrpc.StreamingOutputCallRequest{
				ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(cfg.MessageSize)}},
				Payload:            &testgrpc.Payload{Body: body},
			},
			waiters: make([]waiter, workers)}
		for i := range c.waiters {
			c.waiters[i].ch = make(chan reply, 1)
		}
		return c, nil
	}
	return nil, fmt.Errorf("grpcload %q: protocol %q: want %s or %s", cfg.Name, cfg.Protocol, Unary, Stream)
}

func dial(host string) (*grpc.ClientConn, error) {
	return grpc.NewClient(host, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// timeoutError is a call that ran out of time (loadgen counts it as a
// timeout).
type timeoutError struct{ err error }

func (e timeoutError) Error() string   { return e.err.Error() }
func (e timeoutError) Unwrap() error   { return e.err }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// result turns a call's error into loadgen's (status, error).
func result(err error) (int, error) {
	if err == nil {
		return 200, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return 0, err
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return 0, timeoutError{err}
	case codes.Canceled:
		return 0, err
	}
	return HTTPStatus(st.Code()), nil
}

// HTTPStatus is the HTTP status a gRPC code counts as (grpc-gateway's
// mapping).
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.Unauthenticated:
		return 401
	case codes.PermissionDenied:
		return 403
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.ResourceExhausted:
		return 429
	case codes.Canceled:
		return 499
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.DeadlineExceeded:
		return 504
	default: // Unknown, Internal, DataLoss
		return 500
	}
}

// errShort is an answer whose payload is not the size asked for.
var errShort = errors.New("grpcload: answer's payload is not the size asked for")

type unaryClient struct {
	conns   []*grpc.ClientConn
	clients []testgrpc.TestServiceClient
	req     *testgrpc.SimpleRequest
	size    int32
}

func (c *unaryClient) Do(w int, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := c.clients[w%len(c.clients)].UnaryCall(ctx, c.req)
	if err == nil && int32(len(resp.GetPayload().GetBody())) != c.size {
		return 0, errShort
	}
	return result(err)
}

func (c *unaryClient) Close() error {
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// streamClient pipelines the workers' messages on one FullDuplexCall:
// a send appends the worker to the stream's FIFO, and the stream's
// receiver hands each answer (they come in order) to the worker at the
// FIFO's head. A worker that times out, or a broken stream, ends the
// stream; the next message opens a new one. Sequence numbers keep an
// answer meant for a worker's earlier message from being taken for a
// later one.
type streamClient struct {
	cc   *grpc.ClientConn
	tc   testgrpc.TestServiceClient
	req  *testgrpc.StreamingOutputCallRequest
	size int

	mu      sync.Mutex // serialises sends and the opening of streams
	cur     *stream
	waiters []waiter // by worker
	closed  bool
}

type waiter struct {
	seq uint64 // the worker's current message, set by its own Do only
	ch  chan reply
}

type reply struct {
	seq uint64
	err error
}

type stream struct {
	st      testgrpc.TestService_FullDuplexCallClient
	cancel  context.CancelFunc
	waiters []waiter // the client's

	qmu    sync.Mutex
	fifo   []pending
	broken bool
}

type pending struct {
	w   int
	seq uint64
}

func (c *streamClient) Do(w int, timeout time.Duration) (int, error) {
	if w >= len(c.waiters) {
		return 0, fmt.Errorf("grpcload: worker %d of %d", w, len(c.waiters))
	}
	wt := &c.waiters[w]
	wt.seq++
	seq := wt.seq
	s, err := c.send(w, seq)
	if err != nil {
		return result(err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case r := <-wt.ch:
			if r.seq != seq {
				continue // an answer to an earlier message that timed out
			}
			return result(r.err)
		case <-timer.C:
			s.fail(context.DeadlineExceeded)
			return 0, timeoutError{fmt.Errorf("grpcload: no answer on the stream within %s", timeout)}
		}
	}
}

// send queues (w, seq) and sends its message, opening a stream when there
// is none or the last one broke.
func (c *streamClient) send(w int, seq uint64) (*stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("grpcload: client closed")
	}
	s := c.cur
	if s == nil || s.isBroken() {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := c.tc.FullDuplexCall(ctx)
		if err != nil {
			cancel()
			return nil, err
		}
		s = &stream{st: st, cancel: cancel, waiters: c.waiters}
		c.cur = s
		go c.receive(s)
	}
	s.qmu.Lock()
	if s.broken {
		s.qmu.Unlock()
		return nil, errors.New("grpcload: stream broke")
	}
	s.fifo = append(s.fifo, pending{w, seq})
	s.qmu.Unlock()
	if err := s.st.Send(c.req); err != nil {
		// The stream ended; its receiver fails what is queued.
		s.cancel()
	}
	return s, nil
}

// receive hands each answer on s to the worker at the FIFO's head, until
// the stream ends; then it fails every message still queued.
func (c *streamClient) receive(s *stream) {
	for {
		resp, err := s.st.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		if len(resp.GetPayload().GetBody()) != c.size {
			err = errShort
		}
		s.qmu.Lock()
		if len(s.fifo) == 0 {
			s.qmu.Unlock()
			s.fail(errors.New("grpcload: an answer on the stream that nothing asked for"))
			return
		}
		p := s.fifo[0]
		s.fifo = s.fifo[1:]
		s.qmu.Unlock()
		deliver(s.waiters[p.w].ch, reply{p.seq, err})
	}
}

// fail marks s broken, ends it and fails every message still queued.
func (s *stream) fail(err error) {
	s.qmu.Lock()
	q := s.fifo
	s.fifo, s.broken = nil, true
	s.qmu.Unlock()
	s.cancel()
	for _, p := range q {
		deliver(s.waiters[p.w].ch, reply{p.seq, err})
	}
}

func (s *stream) isBroken() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.broken
}

// deliver puts r in ch, replacing a stale reply left there (a worker
// receives only its current message's reply).
func deliver(ch chan reply, r reply) {
	for {
		select {
		case ch <- r:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

func (c *streamClient) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.cur != nil {
		c.cur.fail(errors.New("grpcload: client closed"))
	}
	c.mu.Unlock()
	return c.cc.Close()
}
