package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/weftmesh/weft/proxy/cluster"
)

// countedGRPCServer is startGRPCServer whose TestService calls are counted.
func countedGRPCServer(t testing.TB) (string, *health.Server, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	calls := new(atomic.Int64)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod != "/grpc.health.v1.Health/Check" {
			calls.Add(1)
		}
		return h(ctx, req)
	}))
	testpb.RegisterTestServiceServer(srv, interop.NewTestServer())
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs, calls
}

// endpointHealth reads from p's cluster status whether endpoint addr of
// cluster name is healthy.
func endpointHealth(t *testing.T, p *Proxy, name, addr string) bool {
	t.Helper()
	for _, c := range p.Clusters().([]cluster.ClusterStatus) {
		if c.Name != name {
			continue
		}
		for _, e := range c.Endpoints {
			if e.Address == addr {
				return e.Healthy
			}
		}
	}
	t.Fatalf("no endpoint %s in cluster %s", addr, name)
	return false
}

const grpcHealthConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {grpc: {service: grpc.testing.TestService}}
            route: {cluster: grpc, timeout: 5s}
clusters:
  - name: grpc
    protocol: http2
    endpoints: [{address: "{{a}}"}, {address: "{{b}}"}]
    health_check:
      grpc: {service: grpc.testing.TestService}
      interval: 100ms
      timeout: 100ms
      healthy_threshold: 1
      unhealthy_threshold: 2
`

// A gRPC server says through the real grpc-go health service that it no
// longer serves: the sidecar's checks take it out of the balancer, so
// every call through the sidecar goes to the other server, and it gets
// calls again once it says SERVING.
func TestGRPCHealthCheckSteersCallsThroughSidecar(t *testing.T) {
	a, ha, callsA := countedGRPCServer(t)
	b, hb, callsB := countedGRPCServer(t)
	const svc = "grpc.testing.TestService"
	for _, hs := range []*health.Server{ha, hb} {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	p, url := startProxy(t, grpcHealthConfig, map[string]string{"a": a, "b": b})
	tc := testpb.NewTestServiceClient(dialGRPC(t, url))
	call := func(n int) (int64, int64) {
		t.Helper()
		a0, b0 := callsA.Load(), callsB.Load()
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := tc.EmptyCall(ctx, &testpb.Empty{})
			cancel()
			if err != nil {
				t.Fatalf("EmptyCall through the sidecar: %v", err)
			}
		}
		return callsA.Load() - a0, callsB.Load() - b0
	}
	if ga, gb := call(20); ga != 10 || gb != 10 {
		t.Fatalf("both SERVING: a got %d calls, b %d; want 10 each", ga, gb)
	}
	ha.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	eventually(t, 5*time.Second, "a out of the balancer", func() bool { return !endpointHealth(t, p, "grpc", a) })
	if ga, gb := call(20); ga != 0 || gb != 20 {
		t.Fatalf("a NOT_SERVING: a got %d calls, b %d; want all on b", ga, gb)
	}
	ha.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	eventually(t, 5*time.Second, "a back in the balancer", func() bool { return endpointHealth(t, p, "grpc", a) })
	if ga, gb := call(20); ga != 10 || gb != 10 {
		t.Fatalf("a SERVING again: a got %d calls, b %d; want 10 each", ga, gb)
	}
}

// The checks ride the cluster's mTLS h2 connections: an outbound sidecar
// checks a gRPC server behind an inbound sidecar, through it.
func TestGRPCHealthCheckOverMTLS(t *testing.T) {
	grpcAddr, hs := startGRPCServer(t)
	const svc = "grpc.testing.TestService"
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	c := newCA(t, time.Hour)
	server := startProxyWith(t, rotatingIdentity(t, c, ordersID, nil), `
listeners:
- name: inbound
  address: 127.0.0.1:0
  direction: inbound
  tls: {mode: strict}
  virtual_hosts:
  - name: app
    domains: ["*"]
    routes: [{match: {prefix: /}, route: {cluster: app}}]
clusters:
- name: app
  protocol: http2
  endpoints: [{address: "{{app}}"}]
`, map[string]string{"app": grpcAddr})
	inbound := server.ListenerAddr("inbound").String()
	client := startProxyWith(t, rotatingIdentity(t, c, webID, nil), `
listeners:
- name: outbound
  address: 127.0.0.1:0
  virtual_hosts:
  - name: orders
    domains: ["*"]
    routes: [{match: {prefix: /}, route: {cluster: orders, timeout: 5s}}]
clusters:
- name: orders
  protocol: auto
  endpoints: [{address: "{{orders}}"}]
  tls: {server_ids: ["{{server_id}}"]}
  panic_threshold: -1
  health_check:
    grpc: {service: grpc.testing.TestService}
    interval: 100ms
    timeout: 100ms
    healthy_threshold: 1
    unhealthy_threshold: 2
`, map[string]string{"orders": inbound, "server_id": ordersID})
	tc := testpb.NewTestServiceClient(dialGRPC(t, "http://"+client.ListenerAddr("outbound").String()))
	empty := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := tc.EmptyCall(ctx, &testpb.Empty{})
		return err
	}
	if err := empty(); err != nil {
		t.Fatalf("EmptyCall through two sidecars: %v", err)
	}
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	eventually(t, 5*time.Second, "the inbound sidecar's endpoint unhealthy", func() bool { return !endpointHealth(t, client, "orders", inbound) })
	wantCode(t, "EmptyCall with no healthy endpoint", empty(), codes.Unavailable)
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	eventually(t, 5*time.Second, "the endpoint healthy again", func() bool { return endpointHealth(t, client, "orders", inbound) })
	if err := empty(); err != nil {
		t.Fatalf("EmptyCall once SERVING again: %v", err)
	}
}
