package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// guestsDir is the nested Go module of the Proxy-Wasm test guests, from the
// module root.
const guestsDir = "proxy/wasm/testdata/guests"

// WeftWasm proxies through `weft proxy` with n no-op Proxy-Wasm filters
// (the Go SDK guest gosdk/noop, default pool size) on the listener: what
// the filters cost by themselves. The guest is built at setup with the Go
// toolchain from the source tree; outside the tree the scenario is skipped.
func WeftWasm(n int) Scenario { return weftWasm(n, false) }

// WeftWasmTrusted is WeftWasm with the filters marked trusted: no callback
// deadline, so wazero's per-call termination watcher is skipped.
func WeftWasmTrusted(n int) Scenario { return weftWasm(n, true) }

func weftWasm(n int, trusted bool) Scenario {
	name, what := fmt.Sprintf("weft-wasm-%d", n), ""
	if trusted {
		name, what = name+"-trusted", " trusted (no callback deadline)"
	}
	return Scenario{
		Name:        name,
		Description: fmt.Sprintf("client → weft proxy with %d no-op Go SDK Wasm filter(s)%s → upstream", n, what),
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := buildNoopGuest(ctx, env)
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
				name := fmt.Sprintf("noop%d", i)
				cfg.Filters = append(cfg.Filters, config.Filter{Name: name, Module: config.Module{Path: module}, Trusted: trusted})
				cfg.Listeners[0].Filters = append(cfg.Listeners[0].Filters, name)
			}
			if _, err := env.StartWeft(ctx, "weft", cfg); err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}

// buildNoopGuest builds gosdk/noop into the scenario's directory and
// returns its file name there (configs name modules relative to
// themselves).
func buildNoopGuest(ctx context.Context, env *Env) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", Skipf("go not found on PATH: needed to build the Wasm guest")
	}
	root, err := moduleRoot()
	if err != nil {
		return "", Skipf("the Wasm guest is built from the source tree: %v", err)
	}
	dir := filepath.Join(root, filepath.FromSlash(guestsDir))
	if _, err := os.Stat(filepath.Join(dir, "gosdk", "noop")); err != nil {
		return "", Skipf("no guest source: %v", err)
	}
	const name = "noop.wasm"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", filepath.Join(env.Dir, name), "./gosdk/noop")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scenario %q: building the noop guest in %s: %w\n%s", env.name, dir, err, out)
	}
	env.Logger.Info("built the noop Wasm guest", zap.String("scenario", env.name), zap.Duration("took", time.Since(start)))
	return name, nil
}
