package guestbuild

import (
	"context"
	"errors"
	"fmt"
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
