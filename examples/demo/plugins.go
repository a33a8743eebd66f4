package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weftmesh/weft/sdk/wasmbuild"
)

// pluginNames are the first-party plugins the demo loads (directories of
// the repository's plugins/).
var pluginNames = []string{"auth", "fault", "routing", "telemetry"}

// rootModule is the module path of the repository's go.mod.
const rootModule = "github.com/weftmesh/weft"

// pluginSet is the outcome of preparing the plugins.
type pluginSet struct {
	paths  map[string]string // plugin name → module file
	cached bool              // every module came from the cache
	took   time.Duration
}

// DefaultCacheDir is where the demo keeps what it builds and compiles:
// <user cache dir>/weft/demo ("" when the system has no cache dir).
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "weft", "demo")
	}
	return ""
}

// buildPlugins returns the Wasm modules of the first-party plugins, built
// from the repository's plugins/ (found from the working directory) with
// sdk/wasmbuild (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) and
// cached in cacheDir/plugins under a digest of the sources each plugin
// compiles from and the Go version, so a second start builds nothing.
// It tells progress when it has to build.
func buildPlugins(ctx context.Context, cacheDir string, progress io.Writer) (*pluginSet, error) {
	start := time.Now()
	if cacheDir == "" {
		return nil, errors.New("no cache directory (no user cache dir on this system)")
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	set := &pluginSet{paths: map[string]string{}, cached: true}
	var mu sync.Mutex
	build := func(n string) error {
		m, err := wasmbuild.Go(ctx, wasmbuild.Options{Dir: root, Package: "./plugins/" + n,
			CacheDir: filepath.Join(cacheDir, "plugins"), Progress: progress})
		if err != nil {
			return fmt.Errorf("plugin %s: %w", n, err)
		}
		mu.Lock()
		defer mu.Unlock()
		set.paths[n] = m.Path
		set.cached = set.cached && m.Cached
		return nil
	}
	// The first build compiles the standard library and the SDK for wasip1;
	// the others then mostly link, so they run side by side.
	if err := build(pluginNames[0]); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pluginNames))
	for i, n := range pluginNames[1:] {
		wg.Go(func() { errs[i+1] = build(n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	set.took = time.Since(start)
	return set, nil
}

// repoRoot finds the Weft source tree: the nearest directory up from the
// working directory whose go.mod declares the weft module.
func repoRoot() (string, error) {
	dir, err := wasmbuild.FindModule("", rootModule)
	if err == nil {
		if _, err = os.Stat(filepath.Join(dir, "plugins")); err == nil {
			return dir, nil
		}
	}
	wd, _ := os.Getwd()
	return "", fmt.Errorf("%s is not inside the Weft source tree (the plugins are built from its plugins/; run the demo from the repository: go run ./cmd/weft demo)", wd)
}
