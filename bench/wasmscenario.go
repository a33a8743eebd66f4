package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/sdk/wasmbuild"
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
		Compare:     "weft",
		Quick:       n == 1 && !trusted,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := buildNoopGuest(ctx, env)
			if err != nil {
				return "", err
			}
			return env.startWeftWithFilters(ctx, n, func(i int) config.Filter {
				return config.Filter{Name: fmt.Sprintf("noop%d", i), Module: config.Module{Path: module}, Trusted: trusted}
			})
		},
	}
}

// startWeftWithFilters starts the upstream and `weft proxy` in front of it
// with n filters on its listener, filter(i) the i-th, and returns the
// listener's URL.
func (e *Env) startWeftWithFilters(ctx context.Context, n int, filter func(i int) config.Filter) (string, error) {
	up, err := e.StartUpstream(ctx, e.UpstreamConfig())
	if err != nil {
		return "", err
	}
	listen, _, err := e.startWeftFor(ctx, up, func(cfg *config.Config) { addFilters(cfg, n, filter) })
	if err != nil {
		return "", err
	}
	return "http://" + listen + "/", nil
}

// buildNoopGuest builds gosdk/noop (once per run) and returns the
// module's absolute path.
func buildNoopGuest(ctx context.Context, env *Env) (string, error) {
	return env.BuildGuest(ctx, guestsDir, "./gosdk/noop")
}

// BuildGuest builds the Go Proxy-Wasm guest pkg (a package path such as
// "./plugins/auth") of the module at dir (relative to the weft module's
// root) with wasmbuild.Go (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared,
// cached by source digest in wasmbuild's cache), once per run, and returns
// the module's absolute path. Outside the source tree, or
// without a Go toolchain, it returns a skip.
func (e *Env) BuildGuest(ctx context.Context, dir, pkg string) (string, error) {
	return e.buildModule(ctx, "go", dir, pkg, goGuest(pkg))
}

// goGuest builds the Go package pkg of the module at modDir.
func goGuest(pkg string) func(ctx context.Context, root, modDir string) (wasmbuild.Module, error) {
	return func(ctx context.Context, _, modDir string) (wasmbuild.Module, error) {
		return wasmbuild.Go(ctx, wasmbuild.Options{Dir: modDir, Package: pkg})
	}
}

// buildModule builds the guest source pkg (relative to dir, itself
// relative to the weft module's root) of language lang with build (given
// the module's root and dir made absolute), once per run, and returns the
// module's absolute path. Outside the source tree, without the source or
// without the language's toolchain, it returns a skip.
func (e *Env) buildModule(ctx context.Context, lang, dir, pkg string, build func(ctx context.Context, root, modDir string) (wasmbuild.Module, error)) (string, error) {
	e.r.guestsMu.Lock()
	if e.r.guests == nil {
		e.r.guests = map[string]*guestBuild{}
	}
	key := lang + "\x00" + dir + "\x00" + pkg
	b := e.r.guests[key]
	if b == nil {
		b = &guestBuild{}
		e.r.guests[key] = b
	}
	e.r.guestsMu.Unlock()
	b.once.Do(func() { b.path, b.err = e.r.buildGuest(ctx, e.Logger, dir, pkg, build) })
	if b.err != nil {
		return "", fmt.Errorf("scenario %q: %w", e.name, b.err)
	}
	return b.path, nil
}

// guestBuild is one guest module built for the run.
type guestBuild struct {
	once sync.Once
	path string
	err  error
}

func (r *runner) buildGuest(ctx context.Context, log *zap.Logger, dir, pkg string, build func(ctx context.Context, root, modDir string) (wasmbuild.Module, error)) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", Skipf("the Wasm guest %s is built from the source tree: %v; run weft bench from inside it", pkg, err)
	}
	modDir := filepath.Join(root, filepath.FromSlash(dir))
	if _, err := os.Stat(filepath.Join(modDir, filepath.FromSlash(pkg))); err != nil {
		return "", Skipf("no guest source: %v", err)
	}
	start := time.Now()
	m, err := build(ctx, root, modDir)
	if errors.Is(err, wasmbuild.ErrToolchainMissing) {
		return "", Skipf("building the Wasm guest %s: %v", pkg, err)
	}
	if err != nil {
		return "", fmt.Errorf("building the Wasm guest %s: %w", pkg, err)
	}
	log.Info("Wasm guest ready", zap.String("package", pkg), zap.String("module", m.Path),
		zap.Bool("cached", m.Cached), zap.Duration("took", time.Since(start)))
	return m.Path, nil
}
