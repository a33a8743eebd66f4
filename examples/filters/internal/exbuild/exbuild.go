package exbuild

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/weftmesh/weft/sdk/wasmbuild"
)

// rootModule is the module path of the repository's go.mod.
const rootModule = "github.com/weftmesh/weft"

// Example is one example filter.
type Example struct {
	// Name is the directory under examples/filters and the value the filter
	// writes into x-weft-example.
	Name string
	// RootID is the root id the module registers its root context under
	// ("" when it answers any).
	RootID string

	// build builds the example in dir (examples/filters/<Name>) of the
	// repository at root.
	build func(ctx context.Context, root, dir string) (wasmbuild.Module, error)
}

// Examples lists every example filter, in the order of the README.
var Examples = []Example{
	{Name: "go-weft", build: func(ctx context.Context, root, _ string) (wasmbuild.Module, error) {
		// Built with the root module: it imports sdk/.
		return wasmbuild.Go(ctx, wasmbuild.Options{Dir: root, Package: "./examples/filters/go-weft"})
	}},
	{Name: "go-proxywasm", build: func(ctx context.Context, _, dir string) (wasmbuild.Module, error) {
		// A nested module pinning the public Go SDK.
		return wasmbuild.Go(ctx, wasmbuild.Options{Dir: dir, Package: "."})
	}},
	{Name: "assemblyscript", RootID: "weft_example", build: func(ctx context.Context, _, dir string) (wasmbuild.Module, error) {
		return wasmbuild.AssemblyScript(ctx, wasmbuild.Options{Dir: dir, Package: "assembly/index.ts"})
	}},
	{Name: "c", build: func(ctx context.Context, root, dir string) (wasmbuild.Module, error) {
		return wasmbuild.C(ctx, wasmbuild.Options{Dir: dir, Package: "filter.c", Include: []string{filepath.Join(root, "sdk", "c", "proxy_wasm.h")}})
	}},
	{Name: "rust", build: func(ctx context.Context, root, dir string) (wasmbuild.Module, error) {
		return wasmbuild.Rust(ctx, wasmbuild.Options{Dir: dir, Package: "filter.rs", Include: []string{filepath.Join(root, "sdk", "rust", "proxy_wasm.rs")}})
	}},
	{Name: "zig", build: func(ctx context.Context, root, dir string) (wasmbuild.Module, error) {
		return wasmbuild.Zig(ctx, wasmbuild.Options{Dir: dir, Package: "filter.zig", Include: []string{filepath.Join(root, "sdk", "zig", "proxy_wasm.zig")}})
	}},
	{Name: "wat", build: func(ctx context.Context, _, dir string) (wasmbuild.Module, error) {
		return wasmbuild.WAT(ctx, wasmbuild.Options{Dir: dir, Package: "filter.wat"})
	}},
}

// Lookup returns the example named name.
func Lookup(name string) (Example, bool) {
	for _, e := range Examples {
		if e.Name == name {
			return e, true
		}
	}
	return Example{}, false
}

// IsSkip reports whether err is (or wraps) a missing toolchain: callers
// skip, not fail; its message says how to install the toolchain.
func IsSkip(err error) bool { return errors.Is(err, wasmbuild.ErrToolchainMissing) }

// Build returns the Wasm module of the example, building it when its
// sources (or its toolchain) changed since the cached build. It is safe for
// concurrent use, also across processes. A missing toolchain returns an
// error for which IsSkip is true.
func (e Example) Build() ([]byte, error) {
	root, err := wasmbuild.FindModule("", rootModule)
	if err != nil {
		return nil, fmt.Errorf("example %s: %w", e.Name, err)
	}
	m, err := e.build(context.Background(), root, filepath.Join(root, "examples", "filters", e.Name))
	switch {
	case IsSkip(err):
		return nil, fmt.Errorf("%s example: %w", e.Name, err)
	case err != nil:
		return nil, fmt.Errorf("example %s: %w", e.Name, err)
	}
	return m.Wasm, nil
}
