package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftmesh/weft/bench/grpcload"
	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/proxy/config"
)

// The gRPC scenarios load the gRPC upstream (bench/grpcupstream, grpc-go)
// with bench/grpcload: UnaryCall with -body-size payloads both ways, the
// -c calls in flight over loadgen.DefaultConns (4) HTTP/2 connections;
// or -c messages in flight on one FullDuplexCall stream. Each weft or
// nginx scenario compares with its direct one of the same run.

// GRPCDirect calls the gRPC upstream with no proxy.
func GRPCDirect() Scenario {
	return Scenario{
		Name:        "grpc-direct",
		Description: fmt.Sprintf("gRPC UnaryCall, -c calls in flight over %d connections → grpc-go upstream, no proxy", loadgen.DefaultConns),
		Protocol:    grpcload.Unary,
		Quick:       true,
		Setup:       grpcDirectSetup,
	}
}

// GRPCWeft calls the gRPC upstream through weft: h2c in, h2c out (the
// cluster's protocol is http2).
func GRPCWeft() Scenario {
	return Scenario{
		Name:        "grpc-weft",
		Description: fmt.Sprintf("gRPC UnaryCall over %d connections → weft (h2c in, cluster protocol http2) → grpc-go upstream", loadgen.DefaultConns),
		Protocol:    grpcload.Unary,
		Compare:     "grpc-direct",
		Quick:       true,
		Setup:       grpcWeftSetup,
	}
}

// GRPCNginx calls the gRPC upstream through nginx's grpc_pass (the
// ngx_http_grpc_module, built into Debian's nginx-light).
func GRPCNginx() Scenario {
	return Scenario{
		Name:        "grpc-nginx",
		Description: fmt.Sprintf("gRPC UnaryCall over %d connections → nginx grpc_pass (1 worker, h2c listener, keep-alive upstream pool) → grpc-go upstream", loadgen.DefaultConns),
		Protocol:    grpcload.Unary,
		Compare:     "grpc-direct",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			bin, err := lookPeer("nginx", "/usr/sbin/nginx")
			if err != nil {
				return "", err
			}
			up, err := env.StartGRPCUpstream(ctx)
			if err != nil {
				return "", err
			}
			listen, err := FreeAddr()
			if err != nil {
				return "", err
			}
			conf, err := env.WriteFile("nginx.conf", []byte(nginxGRPCConfig(env.Dir, listen, up)))
			if err != nil {
				return "", err
			}
			p, err := env.StartProcess("nginx", bin, "-p", env.Dir, "-c", conf, "-e", filepath.Join(env.Dir, "error.log"))
			if err != nil {
				return "", err
			}
			if err := env.WaitGRPC(ctx, listen, p); err != nil {
				if b, rerr := os.ReadFile(filepath.Join(env.Dir, "error.log")); rerr == nil {
					err = fmt.Errorf("%w\nnginx error.log:\n%s", err, b)
				}
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}

// GRPCStreamDirect sends messages on one bidirectional stream to the gRPC
// upstream, no proxy; a request is one message and its answer.
func GRPCStreamDirect() Scenario {
	return Scenario{
		Name:        "grpc-stream-direct",
		Description: "gRPC FullDuplexCall: one stream, -c messages in flight, each answered by one → grpc-go upstream, no proxy",
		Protocol:    grpcload.Stream,
		Conns:       1,
		Setup:       grpcDirectSetup,
	}
}

// GRPCStreamWeft is GRPCStreamDirect through weft.
func GRPCStreamWeft() Scenario {
	return Scenario{
		Name:        "grpc-stream-weft",
		Description: "gRPC FullDuplexCall: one stream, -c messages in flight → weft (h2c both sides) → grpc-go upstream",
		Protocol:    grpcload.Stream,
		Conns:       1,
		Compare:     "grpc-stream-direct",
		Setup:       grpcWeftSetup,
	}
}

// WeftH2C is the weft scenario (HTTP/1.1 upstream, same config) loaded by
// an HTTP/2 client: h2c in, HTTP/1.1 out. Compare with weft, whose client
// speaks HTTP/1.1 on -c connections.
func WeftH2C() Scenario {
	w := Weft()
	return Scenario{
		Name:        "weft-h2c",
		Description: fmt.Sprintf("h2c client (Go x/net/http2, -c streams over %d connections) → weft (no filter) → HTTP/1.1 upstream", loadgen.DefaultConns),
		Protocol:    loadgen.H2C,
		Compare:     "weft",
		Setup:       w.Setup,
	}
}

func grpcDirectSetup(ctx context.Context, env *Env) (string, error) {
	addr, err := env.StartGRPCUpstream(ctx)
	if err != nil {
		return "", err
	}
	return "http://" + addr + "/", nil
}

func grpcWeftSetup(ctx context.Context, env *Env) (string, error) {
	up, err := env.StartGRPCUpstream(ctx)
	if err != nil {
		return "", err
	}
	listen, p, err := env.startWeftFor(ctx, up, func(cfg *config.Config) { cfg.Clusters[0].Protocol = "http2" })
	if err != nil {
		return "", err
	}
	if err := env.WaitGRPC(ctx, listen, p); err != nil {
		return "", err
	}
	return "http://" + listen + "/", nil
}

// scenarioGroups are names -scenarios expands to several scenarios.
var scenarioGroups = map[string][]string{
	"grpc": {"grpc-direct", "grpc-weft", "grpc-nginx", "grpc-stream-direct", "grpc-stream-weft"},
	"h2":   {"weft", "weft-h2c"},
	// download: the on-demand streaming scenarios (streamscenario.go).
	"download": {"direct-download", "weft-download"},
	// tcp: the L4 path with and without network filters (tcpscenario.go).
	"tcp": {"direct", "weft", "weft-tcp", "weft-tcp-wasm-1", "weft-tcp-wasm-4"},
	// ref: weft beside nginx and the two reference proxies (peers.go).
	"ref": {"weft", "nginx", "ref-epoll", "ref-fasthttp"},
}

// nginxGRPCConfig is nginx proxying gRPC: an h2c listener (HTTP/2 without
// TLS) and grpc_pass to a keep-alive pool.
func nginxGRPCConfig(dir, listen, upstreamAddr string) string {
	return nginxMain(dir, "grpcup", upstreamAddr, fmt.Sprintf(`    server {
        listen %s http2;
        location / {
            grpc_pass grpc://grpcup;
        }
    }
`, listen))
}
