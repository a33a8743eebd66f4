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
	for _, target := range []struct{ name, url string }{{"direct", "http://" + addr}, {"weft", url}} {
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
