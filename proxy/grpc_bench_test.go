package proxy

import (
	"context"
	"strings"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkGRPCUnary is one small unary call (grpc-go client and server on
// loopback, 64 concurrent calls on one connection) direct and through a
// sidecar, in one run: the sidecar's cost is the difference.
func BenchmarkGRPCUnary(b *testing.B) {
	addr, _ := startGRPCServer(b)
	_, url := startProxy(b, grpcConfig, map[string]string{"grpc": addr})
	// The same sidecar with x/net's HTTP/2 server downstream, the one
	// before weft's own (listener http2.server).
	xnetConfig := strings.Replace(grpcConfig, "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:0\n    http2: {server: x/net}\n", 1)
	_, xurl := startProxy(b, xnetConfig, map[string]string{"grpc": addr})
	for _, target := range []struct{ name, url string }{{"direct", "http://" + addr}, {"weft", url}, {"weft-xnet-server", xurl}} {
		b.Run(target.name, func(b *testing.B) {
			tc := testgrpc.NewTestServiceClient(dialGRPC(b, strings.TrimSuffix(target.url, "/")))
			req := &testgrpc.SimpleRequest{ResponseSize: 64, Payload: &testgrpc.Payload{Body: make([]byte, 64)}}
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tc.UnaryCall(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
