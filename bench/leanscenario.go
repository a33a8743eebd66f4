package bench

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/sdk/wasmbuild"
)

// WeftWasmWAT proxies through `weft proxy` with n filters of the WAT no-op
// proxy/wasm/testdata/noop.wat, whose callbacks return at once and which
// exports no body or trailer callback: the host's own path per filter,
// with next to nothing of a guest's. Against weft-wasm-N (the public Go
// SDK's no-op) it splits a filter's cost between the host and the guest.
// Without wat2wasm (wabt) it is skipped.
func WeftWasmWAT(n int) Scenario {
	return leanScenario(fmt.Sprintf("weft-wat-noop-%d", n),
		fmt.Sprintf("client → weft proxy with %d WAT no-op Wasm filter(s) (the host's path alone) → upstream", n),
		n, "wat", "proxy/wasm/testdata", "noop.wat",
		func(ctx context.Context, _, dir string) (wasmbuild.Module, error) {
			return wasmbuild.WAT(ctx, wasmbuild.Options{Dir: dir, Package: "noop.wat"})
		})
}

// WeftWasmC proxies through `weft proxy` with n filters of the C no-op
// proxy/wasm/testdata/guests/c/noop.c (over sdk/c/proxy_wasm.h): a compiled
// guest through the public ABI that exports the same stream callbacks as
// the public Go SDK's no-op, so a stream enters it as often, without the Go
// runtime's entry or the SDK's context table. Without clang, wasm-ld and
// wasi-libc it is skipped.
func WeftWasmC(n int) Scenario {
	return leanScenario(fmt.Sprintf("weft-c-noop-%d", n),
		fmt.Sprintf("client → weft proxy with %d C no-op Wasm filter(s) (sdk/c, the public SDK's callbacks) → upstream", n),
		n, "c", guestsDir, "c/noop.c",
		func(ctx context.Context, root, dir string) (wasmbuild.Module, error) {
			return wasmbuild.C(ctx, wasmbuild.Options{Dir: dir, Package: "c/noop.c",
				Include: []string{filepath.Join(root, "sdk", "c")}})
		})
}

func leanScenario(name, desc string, n int, lang, dir, src string, build func(ctx context.Context, root, dir string) (wasmbuild.Module, error)) Scenario {
	return Scenario{
		Name:        name,
		Description: desc,
		Compare:     "weft",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := env.buildModule(ctx, lang, dir, src, build)
			if err != nil {
				return "", err
			}
			return env.startWeftWithFilters(ctx, n, func(i int) config.Filter {
				return config.Filter{Name: fmt.Sprintf("noop%d", i), Module: config.Module{Path: module}}
			})
		},
	}
}
