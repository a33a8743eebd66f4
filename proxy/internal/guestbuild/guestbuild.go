package guestbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk/wasmbuild"
)

// rootModule is the module path of the repository's go.mod; the guests
// live below it in guestsDir.
const (
	rootModule = "github.com/weftmesh/weft"
	guestsDir  = "proxy/wasm/testdata/guests"
)

// GoSDK returns the Go guest guests/gosdk/<name> built with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared. It skips t when go is
// missing and fails it when the build fails.
func GoSDK(t testing.TB, name string) []byte {
	t.Helper()
	return finish(t, "Go guest "+name, func(ctx context.Context) (wasmbuild.Module, error) {
		dir, err := guestsRoot(name)
		if err != nil {
			return wasmbuild.Module{}, err
		}
		return wasmbuild.Go(ctx, wasmbuild.Options{Dir: dir, Package: "./gosdk/" + name})
	})
}

// WeftSDK returns the guest proxy/wasm/testdata/weftsdk/<name>, written
// with Weft's own Go SDK (package sdk of this module), built like GoSDK.
func WeftSDK(t testing.TB, name string) []byte {
	t.Helper()
	return finish(t, "Weft SDK guest "+name, func(ctx context.Context) (wasmbuild.Module, error) {
		if _, err := guestsRoot(name); err != nil {
			return wasmbuild.Module{}, err
		}
		root, err := wasmbuild.FindModule("", rootModule)
		if err != nil {
			return wasmbuild.Module{}, err
		}
		return wasmbuild.Go(ctx, wasmbuild.Options{Dir: root, Package: "./proxy/wasm/testdata/weftsdk/" + name})
	})
}

// AssemblyScript returns the AssemblyScript guest guests/as/assembly/<name>.ts
// built with the package's pinned assemblyscript and @solo-io/proxy-runtime.
// It skips t when npm is missing and fails it when the build fails.
func AssemblyScript(t testing.TB, name string) []byte {
	t.Helper()
	return finish(t, "AssemblyScript guest "+name, func(ctx context.Context) (wasmbuild.Module, error) {
		dir, err := guestsRoot(name)
		if err != nil {
			return wasmbuild.Module{}, err
		}
		return wasmbuild.AssemblyScript(ctx, wasmbuild.Options{Dir: filepath.Join(dir, "as"), Package: "assembly/" + name + ".ts"})
	})
}

// C returns the C guest guests/c/<name>.c, built with clang for
// wasm32-wasi against Weft's C binding (sdk/c/proxy_wasm.h) and the guests'
// guest.h. It skips t when clang, wasm-ld or wasi-libc is missing and fails
// it when the build fails.
func C(t testing.TB, name string) []byte {
	t.Helper()
	return finish(t, "C guest "+name, func(ctx context.Context) (wasmbuild.Module, error) {
		dir, err := guestsRoot(name)
		if err != nil {
			return wasmbuild.Module{}, err
		}
		root, err := wasmbuild.FindModule("", rootModule)
		if err != nil {
			return wasmbuild.Module{}, err
		}
		return wasmbuild.C(ctx, wasmbuild.Options{Dir: dir, Package: "c/" + name + ".c",
			Include: []string{filepath.Join(root, "sdk", "c"), filepath.Join(dir, "c")}})
	})
}

// WAT returns the module assembled from the WAT file at path (absolute, or
// relative to the test's working directory) with wat2wasm. It skips t when
// wat2wasm is missing and fails it when the file does not assemble.
func WAT(t testing.TB, path string) []byte {
	t.Helper()
	return finish(t, "WAT "+path, func(ctx context.Context) (wasmbuild.Module, error) {
		return wasmbuild.WAT(ctx, wasmbuild.Options{Package: path})
	})
}

func finish(t testing.TB, what string, build func(context.Context) (wasmbuild.Module, error)) []byte {
	t.Helper()
	start := time.Now()
	m, err := build(context.Background())
	switch {
	case errors.Is(err, wasmbuild.ErrToolchainMissing):
		t.Skip(err)
	case err != nil:
		t.Fatalf("guestbuild: %s: %v", what, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("guestbuild: %s ready in %v", what, d.Round(time.Millisecond))
	}
	return m.Wasm
}

// guestsRoot checks name (no escaping the guests directory) and returns
// the guests module's directory, found up from the working directory.
func guestsRoot(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("bad guest name %q: want a plain directory or file name", name)
	}
	root, err := wasmbuild.FindModule("", rootModule)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(guestsDir)), nil
}

// CompileCacheDir is a wazero compilation cache shared by every test of
// the repository and kept across runs beside the guest builds (wazero
// keys it by its own version, the CPU and each module's bytes). Tests that
// load Go guests (2–3 MB, about 0.6 s to compile, 8 s under -race) pass it
// as the proxy's WasmCacheDir so each module is compiled once per machine,
// as a sidecar with -wasm-cache compiles it once per host.
func CompileCacheDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(wasmbuild.DefaultCacheDir(), "wazero-compiled")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("guestbuild: compile cache: %v", err)
	}
	return dir
}
