package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// grpc-go's interop cases (google.golang.org/grpc/interop) report a failed
// expectation through grpclog's Fatal, which exits the process; this
// logger turns it into a panic the test recovers as its failure.
type panicLogger struct{ grpclog.LoggerV2 }

type interopFailure struct{ msg string }

func (panicLogger) Fatal(args ...any) { panic(interopFailure{fmt.Sprint(args...)}) }
func (panicLogger) Fatalf(format string, args ...any) {
	panic(interopFailure{fmt.Sprintf(format, args...)})
}
func (panicLogger) Fatalln(args ...any) { panic(interopFailure{fmt.Sprintln(args...)}) }
func (l panicLogger) FatalDepth(_ int, args ...any) {
	panic(interopFailure{fmt.Sprint(args...)})
}
func (panicLogger) InfoDepth(int, ...any)    {}
func (panicLogger) WarningDepth(int, ...any) {}
func (panicLogger) ErrorDepth(int, ...any)   {}

func init() {
	grpclog.SetLoggerV2(panicLogger{grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)})
}

// startGRPCServer serves grpc-go's interop TestService and the health
// service on loopback (plaintext HTTP/2).
func startGRPCServer(t testing.TB) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

// grpcConfig routes everything to the gRPC upstream over HTTP/2.
const grpcConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.testing.TestService}}
            route: {cluster: grpc, timeout: 5s}
          - match: {grpc: {service: grpc.health.v1.Health, method: Check}}
            route: {cluster: grpc}
          - match: {prefix: /grpc.testing.UnimplementedService/}
            direct_response: {status: 404}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{grpc}}"}]
`

func dialGRPC(t testing.TB, url string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Every RPC kind of grpc-go's interop suite, through the sidecar: unary
// (empty and 271 KB), client, server and bidirectional streaming, custom
// and binary (-bin) metadata echoed in headers and trailers, status codes
// with percent-encoded messages, cancellation mid-stream and a deadline
// on a server that sleeps.
func TestGRPCInteropThroughSidecar(t *testing.T) {
	addr, _ := startGRPCServer(t)
	_, url := startProxy(t, grpcConfig, map[string]string{"grpc": addr})
	cc := dialGRPC(t, url)
	tc := testgrpc.NewTestServiceClient(cc)
	for _, c := range []struct {
		name string
		run  func(context.Context)
	}{
		{"empty unary", func(ctx context.Context) { interop.DoEmptyUnaryCall(ctx, tc) }},
		{"large unary", func(ctx context.Context) { interop.DoLargeUnaryCall(ctx, tc) }},
		{"client streaming", func(ctx context.Context) { interop.DoClientStreaming(ctx, tc) }},
		{"server streaming", func(ctx context.Context) { interop.DoServerStreaming(ctx, tc) }},
		{"ping pong", func(ctx context.Context) { interop.DoPingPong(ctx, tc) }},
		{"empty stream", func(ctx context.Context) { interop.DoEmptyStream(ctx, tc) }},
		{"custom metadata", func(ctx context.Context) { interop.DoCustomMetadata(ctx, tc) }},
		{"status code and message", func(ctx context.Context) { interop.DoStatusCodeAndMessage(ctx, tc) }},
		{"special status message", func(ctx context.Context) { interop.DoSpecialStatusMessage(ctx, tc) }},
		{"cancel after begin", func(ctx context.Context) { interop.DoCancelAfterBegin(ctx, tc) }},
		{"cancel after first response", func(ctx context.Context) { interop.DoCancelAfterFirstResponse(ctx, tc) }},
		{"timeout on sleeping server", func(ctx context.Context) { interop.DoTimeoutOnSleepingServer(ctx, tc) }},
		{"unimplemented method", func(ctx context.Context) { interop.DoUnimplementedMethod(ctx, cc) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					if f, ok := r.(interopFailure); ok {
						t.Fatalf("interop: %s", f.msg)
					}
					panic(r)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c.run(ctx)
		})
	}
}

// What weft answers itself on a gRPC call is a trailers-only gRPC answer
// with the matching status: no route is UNIMPLEMENTED, no healthy
// endpoint UNAVAILABLE, a route timeout DEADLINE_EXCEEDED.
func TestGRPCLocalRepliesAreGRPCStatuses(t *testing.T) {
	addr, _ := startGRPCServer(t)
	dead := testserver.FreeAddr(t)
	p, url := startProxy(t, `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.testing.TestService, method: EmptyCall}}
            route: {cluster: dead}
          - match: {grpc: {service: grpc.testing.TestService, method: FullDuplexCall}}
            route: {cluster: grpc, timeout: 200ms}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{grpc}}"}]
  - name: dead
    protocol: http2
    endpoints: [{address: "{{dead}}"}]
`, map[string]string{"grpc": addr, "dead": dead})
	tc := testgrpc.NewTestServiceClient(dialGRPC(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := tc.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err == nil {
		_, err = st.Recv() // a stream's status comes with its first receive
	}
	wantCode(t, "no route", err, codes.Unimplemented)

	_, err = tc.EmptyCall(ctx, &testgrpc.Empty{})
	wantCode(t, "connect failure", err, codes.Unavailable)
	if n, _ := metricValue(t, p, "weft_grpc_requests_total", "cluster", "dead", "grpc_status", "14"); n != 1 {
		t.Fatalf("weft_grpc_requests_total{cluster=dead,grpc_status=14} = %v, want 1", n)
	}

	// The server answers only after 5 s; the route's 200 ms timeout ends
	// the wait for its headers.
	fd, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fd.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 5_000_000}}}); err != nil {
		t.Fatal(err)
	}
	_, err = fd.Recv()
	wantCode(t, "route timeout", err, codes.DeadlineExceeded)
	if ctx.Err() != nil {
		t.Fatal("the client's own deadline passed: the route timeout did not answer")
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", what, got, err, want)
	}
}

// grpc-timeout bounds the call through the sidecar and reaches the
// upstream shortened by the time already spent.
func TestGRPCDeadlinePropagates(t *testing.T) {
	addr, _ := startGRPCServer(t)
	_, url := startProxy(t, grpcConfig, map[string]string{"grpc": addr})
	tc := testgrpc.NewTestServiceClient(dialGRPC(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// FullDuplexCall with a response that the server sends only after a
	// long interval: the caller's deadline ends the call.
	st, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 5_000_000}}}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, "deadline", err, codes.DeadlineExceeded)

	md := metadata.Pairs("x-weft-test", "1")
	hctx, hcancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 5*time.Second)
	defer hcancel()
	resp, err := healthpb.NewHealthClient(dialGRPC(t, url)).Check(hctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check through the sidecar: %v %v", resp, err)
	}
}

// A Proxy-Wasm filter (public Go SDK) on a gRPC stream sees every body
// chunk both ways with end_of_stream on the request's last, reads and
// adds response trailers, and its local reply on a body chunk reaches
// the gRPC client as PERMISSION_DENIED.
func TestWasmFilterOnGRPCStreams(t *testing.T) {
	addr, _ := startGRPCServer(t)
	dir := t.TempDir()
	module := guestFile(t, dir, "grpcwatch")
	_, url := startProxy(t, `
filters:
  - name: watch
    module: {path: {{module}}}
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [watch]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.testing.TestService}}
            route: {cluster: grpc}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{grpc}}"}]
`, map[string]string{"grpc": addr, "module": module})
	tc := testgrpc.NewTestServiceClient(dialGRPC(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Bidirectional: four messages each way, one at a time.
	st, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := st.Send(&testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 100}},
			Payload:            &testgrpc.Payload{Body: make([]byte, 200)},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
	seen := strings.Join(st.Trailer().Get("x-wasm-seen"), ",")
	// 4 messages of over 200 bytes in 5-byte gRPC frames, in at least 4
	// chunks (one per message), then the end of stream.
	for _, want := range []string{"req_eos=true", "header_eos=false", "grpc_status=0"} {
		if !strings.Contains(seen, want) {
			t.Fatalf("the filter's trailer %q lacks %s", seen, want)
		}
	}
	var chunks, respChunks, bytes int
	if _, err := fmt.Sscanf(seen, "req_chunks=%d req_bytes=%d", &chunks, &bytes); err != nil || bytes < 4*205 {
		t.Fatalf("the filter's trailer %q: %v: want req_bytes of at least %d", seen, err, 4*205)
	}
	fmt.Sscanf(seen[strings.Index(seen, "resp_chunks="):], "resp_chunks=%d", &respChunks)
	if chunks < 4 || respChunks < 4 {
		t.Fatalf("the filter saw %d request and %d response chunks, want at least 4 each (%s)", chunks, respChunks, seen)
	}

	// A local reply from a body callback.
	dctx := metadata.AppendToOutgoingContext(ctx, "x-deny-body", "1")
	_, err = tc.UnaryCall(dctx, &testgrpc.SimpleRequest{ResponseSize: 1})
	wantCode(t, "body refused by the filter", err, codes.PermissionDenied)
	if !strings.Contains(status.Convert(err).Message(), "body refused by wasm") {
		t.Fatalf("message %q", status.Convert(err).Message())
	}
}

// A filter (Weft's Go SDK) makes gRPC call-outs through the proxy's HTTP/2
// cluster: a unary health check, a bidirectional stream with three
// requests and the sending side closed, a stream cancelled at once (no
// callback after it), and a call to an unknown cluster (UNAVAILABLE).
func TestWasmGRPCCallouts(t *testing.T) {
	addr, hs := startGRPCServer(t)
	dir := t.TempDir()
	module := filepath.Join(dir, "grpccallout.wasm")
	if err := os.WriteFile(module, guestbuild.WeftSDK(t, "grpccallout"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, url := startProxy(t, `
filters:
  - name: callout
    module: {path: {{module}}}
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [callout]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            direct_response: {status: 404}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{grpc}}"}]
`, map[string]string{"grpc": addr, "module": module})
	c := &fasthttp.Client{}
	for _, tc := range []struct{ path, want string }{
		{"/call", "status=0 serving=true message="},
		{"/stream", "messages=3 bytes=42 initial_md=true trailing_md=true status=0"},
		{"/cancel", "cancelled"},
		{"/nocluster", "status=14 serving=false"},
	} {
		st, body, _ := get(t, c, url+tc.path)
		if st != 200 || !strings.HasPrefix(body, tc.want) {
			t.Fatalf("%s: %d %q, want %q", tc.path, st, body, tc.want)
		}
	}
	// NOT_SERVING comes back in the message, with an OK status.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if st, body, _ := get(t, c, url+"/call"); st != 200 || !strings.HasPrefix(body, "status=0 serving=false") {
		t.Fatalf("/call on a server NOT_SERVING: %d %q", st, body)
	}
	// No VM broke on the way (the cancelled stream got no callback).
	for _, ev := range []string{"trap", "vm_replaced"} {
		if n, _ := metricValue(t, p, "weft_wasm_events_total", "plugin", "callout", "event", ev); n != 0 {
			t.Fatalf("%v %s events", n, ev)
		}
	}
}

// flakyHealth answers UNAVAILABLE to its first `fail` checks, then SERVING.
type flakyHealth struct {
	healthpb.UnimplementedHealthServer
	fail  atomic.Int32
	calls atomic.Int32
}

func (f *flakyHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	f.calls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// Retries follow the gRPC status of a trailers-only answer: UNAVAILABLE is
// retried (the call is a POST), a status not listed is not; an authz
// denial is PERMISSION_DENIED.
func TestGRPCRetriesOnStatusAndAuthzDenial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fh := &flakyHealth{}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, fh)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	p, url := startProxy(t, `
listeners:
  - name: main
    address: 127.0.0.1:0
    authz:
      default: allow
      rules:
        - {name: no-watch, action: deny, paths: ["/grpc.health.v1.Health/Watch"]}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.health.v1.Health}}
            route:
              cluster: grpc
              retry: {attempts: 3, on: [unavailable], backoff_base: 1ms}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{grpc}}"}]
`, map[string]string{"grpc": ln.Addr().String()})
	hc := healthpb.NewHealthClient(dialGRPC(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fh.fail.Store(2)
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("two UNAVAILABLE then SERVING, with 3 retries: %v %v", resp, err)
	}
	if n := fh.calls.Load(); n != 3 {
		t.Fatalf("the upstream saw %d calls, want 3", n)
	}
	if n, _ := metricValue(t, p, "weft_upstream_retries_total", "cluster", "grpc"); n != 2 {
		t.Fatalf("weft_upstream_retries_total = %v, want 2", n)
	}
	// More failures than retries: the last status reaches the client.
	fh.calls.Store(0)
	fh.fail.Store(10)
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	wantCode(t, "retries exhausted", err, codes.Unavailable)
	if n := fh.calls.Load(); n != 4 {
		t.Fatalf("the upstream saw %d calls, want 4 (1 + 3 retries)", n)
	}
	fh.fail.Store(0)

	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, "authz denial", err, codes.PermissionDenied)
}

// A drain (GOAWAY) lets a stream in flight finish: the server keeps
// streaming to the client after the sidecar began shutting down.
func TestGRPCStreamSurvivesDrain(t *testing.T) {
	addr, _ := startGRPCServer(t)
	p, url := startProxy(t, grpcConfig, map[string]string{"grpc": addr})
	tc := testgrpc.NewTestServiceClient(dialGRPC(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Five messages 100 ms apart.
	params := make([]*testgrpc.ResponseParameters, 5)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: 8, IntervalUs: 100_000}
	}
	st, err := tc.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		done <- p.Shutdown(sctx)
	}()
	for i := 1; i < 5; i++ {
		if _, err := st.Recv(); err != nil {
			t.Fatalf("message %d after the drain began: %v", i, err)
		}
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// Outlier detection counts a gRPC endpoint's UNAVAILABLE answers as the
// 503s they map to and ejects it: calls then go to the healthy one.
func TestGRPCOutlierDetectionEjectsUnavailableEndpoint(t *testing.T) {
	good, _ := startGRPCServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad := &flakyHealth{}
	bad.fail.Store(1 << 30)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, bad)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	_, url := startProxy(t, `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.health.v1.Health}}
            route: {cluster: grpc}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{good}}"}, {address: "{{bad}}"}]
    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 1m, max_ejection_percent: 50}
`, map[string]string{"good": good, "bad": ln.Addr().String()})
	hc := healthpb.NewHealthClient(dialGRPC(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failures := 0
	for i := 0; i < 10; i++ {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			failures++
		}
	}
	if failures != 3 {
		t.Fatalf("%d of 10 calls failed before and after the ejection, want the 3 that ejected it", failures)
	}
	before := bad.calls.Load()
	for i := 0; i < 10; i++ {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d after the ejection: %v", i, err)
		}
	}
	if bad.calls.Load() != before {
		t.Fatalf("the ejected endpoint got %d more calls", bad.calls.Load()-before)
	}
}

// weft itself enforces a gRPC call's grpc-timeout: against an upstream
// that ignores the header and never answers, the call ends at its deadline
// with DEADLINE_EXCEEDED, the upstream's stream is cancelled, and the
// header it received was no longer than the caller's.
func TestGRPCTimeoutEnforcedBySidecar(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	cancelled := make(chan struct{})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("grpc-timeout")
		<-r.Context().Done() // never answers on its own
		close(cancelled)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, url := startProxy(t, grpcConfig, map[string]string{"grpc": ln.Addr().String()})

	req, err := http.NewRequest("POST", url+"/grpc.health.v1.Health/Check", strings.NewReader("\x00\x00\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	req.Header.Set("grpc-timeout", "200m")
	resp, err := h2cClient().Do(req) // the client itself enforces nothing
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	st := resp.Header.Get("grpc-status")
	if st == "" {
		st = resp.Trailer.Get("grpc-status")
	}
	if st != "4" {
		t.Fatalf("grpc-status %q, want 4 (DEADLINE_EXCEEDED)", st)
	}
	if d, ok := grpcTimeout([]byte(<-got)); !ok || d > 200*time.Millisecond || d <= 0 {
		t.Fatalf("the upstream got grpc-timeout %v (ok %v), want at most the caller's 200ms", d, ok)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream's stream was not cancelled at the deadline")
	}
}
