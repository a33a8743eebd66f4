// Package grpcexample keeps examples/grpc/sidecar.yaml working: the test
// runs it, with free ports, between a grpc-go client and server.
package grpcexample

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/loopback"
)

// freeAddr is a loopback address for a server that must be told its port
// before it binds (loopback.FreeAddr: below the ephemeral range).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestSidecarYAMLCarriesGRPC(t *testing.T) {
	raw, err := os.ReadFile("sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The service on a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	listen := freeAddr(t)
	text := strings.NewReplacer("127.0.0.1:50051", ln.Addr().String(), "127.0.0.1:10000", listen,
		"access_log: {enabled: true}", "access_log: {enabled: false}").Replace(string(raw))
	cfg, err := config.Parse("sidecar.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(context.Background(), proxy.Options{Logger: zap.NewNop(), DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	if err := p.Apply(context.Background(), cfg, []byte(text), "."); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check through examples/grpc/sidecar.yaml: %v %v", resp, err)
	}
}
