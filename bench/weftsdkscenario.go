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
	return weftSDKScenario(fmt.Sprintf("weft-weftsdk-%d", n),
		fmt.Sprintf("client → weft proxy with %d request-header Wasm filter(s) written with Weft's Go SDK → upstream", n),
		n, "headers")
}

// WeftWasmWeftSDKNoop is WeftWasmWeftSDK with the guest configured "noop":
// a filter that implements no callback, so the host enters the guest only
// to create and delete each stream's context. Against weft-weftsdk-N it
// tells the guest's per-stream cost from the header write's (the guest
// call, and a request the proxy forwards with a header changed).
func WeftWasmWeftSDKNoop(n int) Scenario {
	return weftSDKScenario(fmt.Sprintf("weft-weftsdk-noop-%d", n),
		fmt.Sprintf("client → weft proxy with %d no-op Wasm filter(s) written with Weft's Go SDK → upstream", n),
		n, "noop")
}

func weftSDKScenario(name, desc string, n int, kind string) Scenario {
	return Scenario{
		Name:        name,
		Description: desc,
		Compare:     "weft",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := env.BuildGuest(ctx, ".", "./proxy/wasm/testdata/weftsdk/callbacks")
			if err != nil {
				return "", err
			}
			return env.startWeftWithFilters(ctx, n, func(i int) config.Filter {
				return config.Filter{Name: fmt.Sprintf("%s%d", kind, i), Module: config.Module{Path: module}, Config: config.RawConfig(kind)}
			})
		},
	}
}
