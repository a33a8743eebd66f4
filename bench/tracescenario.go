package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// WeftTracing proxies through `weft proxy` with tracing on at pct percent
// sampling, exporting OTLP/HTTP to a collector stand-in in this process
// that reads and discards every export: what tracing costs the sidecar
// (trace header parsing and rewriting for every request, span recording
// and protobuf export for the sampled ones). Compare with "weft".
func WeftTracing(pct float64) Scenario {
	var srv *http.Server
	var posts, bytes atomic.Int64
	return Scenario{
		Name:        fmt.Sprintf("weft-trace-%g", pct),
		Description: fmt.Sprintf("client → weft proxy, tracing at %g%% sampling, OTLP to a local sink → upstream", pct),
		Compare:     "weft",
		Quick:       pct == 1,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return "", fmt.Errorf("scenario %q: collector: %w", env.name, err)
			}
			srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				posts.Add(1)
				bytes.Add(n)
			})}
			go func() { _ = srv.Serve(ln) }()
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, _, err := env.startWeftFor(ctx, up, func(cfg *config.Config) {
				p := pct
				cfg.Tracing = config.Tracing{Enabled: true, SamplingPercent: &p, OTLPEndpoint: "http://" + ln.Addr().String() + "/v1/traces"}
			})
			if err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
		Teardown: func(env *Env) error {
			env.Logger.Info("trace collector", zap.Int64("exports", posts.Load()), zap.Int64("bytes", bytes.Load()))
			if srv == nil {
				return nil
			}
			return srv.Close()
		},
	}
}
