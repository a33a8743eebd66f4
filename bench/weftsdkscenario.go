package bench

import (
	"context"
	"fmt"

	"github.com/weftmesh/weft/proxy/config"
)

// WeftWasmWeftSDK proxies through `weft proxy` with n filters written with
// Weft's own Go SDK (the test guest weftsdk/callbacks, configured
// "headers": it sets one request header and implements nothing else):
// what a minimal filter costs when the SDK declares its callbacks
// (weft.stream_callbacks) and the host skips the others. Compare with
// weft-wasm-N, the public Proxy-Wasm Go SDK's no-op, which gets every
// callback.
func WeftWasmWeftSDK(n int) Scenario {
	return Scenario{
		Name:        fmt.Sprintf("weft-weftsdk-%d", n),
		Description: fmt.Sprintf("client → weft proxy with %d request-header Wasm filter(s) written with Weft's Go SDK → upstream", n),
		Compare:     "weft",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := env.BuildGuest(ctx, ".", "./proxy/wasm/testdata/weftsdk/callbacks")
			if err != nil {
				return "", err
			}
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, err := FreeAddr()
			if err != nil {
				return "", err
			}
			admin, err := FreeAddr()
			if err != nil {
				return "", err
			}
			cfg := WeftConfig(listen, admin, up)
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("headers%d", i)
				cfg.Filters = append(cfg.Filters, config.Filter{Name: name, Module: config.Module{Path: module}, Config: "headers"})
				cfg.Listeners[0].Filters = append(cfg.Listeners[0].Filters, name)
			}
			if _, err := env.StartWeft(ctx, "weft", cfg); err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}
