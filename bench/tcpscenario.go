package bench

import (
	"context"
	"fmt"

	"github.com/weftmesh/weft/proxy/config"
)

// WeftTCP loads the upstream through a `protocol: tcp` listener: weft
// copies the bytes of each connection as they are (proxy/tcpproxy), so
// the HTTP/1.1 requests of the load generator are a request/response echo
// over the L4 path. Compare it with direct (no proxy) and with weft (the
// HTTP path). On demand only: -scenarios tcp.
func WeftTCP() Scenario { return weftTCP(0) }

// WeftTCPWasm is WeftTCP with n no-op network (L4) Wasm filters (the Go
// SDK guest gosdk/tcpnoop) on the tcp listener: what proxy_on_new_connection,
// proxy_on_downstream_data and proxy_on_upstream_data cost per exchange.
func WeftTCPWasm(n int) Scenario { return weftTCP(n) }

func weftTCP(filters int) Scenario {
	name, what, compare := "weft-tcp", "no filter", ""
	if filters > 0 {
		name = fmt.Sprintf("weft-tcp-wasm-%d", filters)
		what, compare = fmt.Sprintf("%d no-op network Wasm filter(s)", filters), "weft-tcp"
	}
	return Scenario{
		Name:        name,
		Description: "client → weft tcp listener (" + what + ", bytes as is) → upstream",
		Compare:     compare,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			var module string
			if filters > 0 {
				var err error
				if module, err = env.BuildGuest(ctx, guestsDir, "./gosdk/tcpnoop"); err != nil {
					return "", err
				}
			}
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, _, err := env.startWeftFor(ctx, up, func(cfg *config.Config) {
				l := &cfg.Listeners[0]
				l.Protocol, l.VirtualHosts, l.TCP = "tcp", nil, &config.TCPProxy{Cluster: "up"}
				addFilters(cfg, filters, func(i int) config.Filter {
					return config.Filter{Name: fmt.Sprintf("noop%d", i), Module: config.Module{Path: module}}
				})
			})
			if err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}
