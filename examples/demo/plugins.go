package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// pluginNames are the first-party plugins the demo loads (directories of
// the repository's plugins/).
var pluginNames = []string{"auth", "fault", "routing", "telemetry"}

// rootModule is the module path of the repository's go.mod.
const rootModule = "github.com/weftmesh/weft"

// pluginBuildTimeout bounds one go command (a cold build cache included).
const pluginBuildTimeout = 3 * time.Minute

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
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared and cached in
// cacheDir under a digest of the sources the plugins compile from and the
// Go version, so a second start builds nothing.
// It tells progress when it has to build.
func buildPlugins(ctx context.Context, cacheDir string, progress io.Writer) (*pluginSet, error) {
	start := time.Now()
	if cacheDir == "" {
		return nil, errors.New("no cache directory (no user cache dir on this system)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("the go command is not on PATH (the plugins are built with the Go toolchain)")
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plugin cache: %w", err)
	}
	env := []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off"}
	version, err := goCmd(ctx, root, env, goBin, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	pkgs := make([]string, len(pluginNames))
	for i, n := range pluginNames {
		pkgs[i] = "./plugins/" + n
	}
	// One digest over every non-standard package the plugins compile from:
	// any change there rebuilds all four (they share the SDK anyway).
	dirs, err := goCmd(ctx, root, env, goBin, append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}"}, pkgs...)...)
	if err != nil {
		return nil, fmt.Errorf("listing the plugins' sources: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "weft demo plugins v1\n%s\n", bytes.TrimSpace(version))
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	list := strings.Fields(string(dirs))
	sort.Strings(list)
	for _, d := range list {
		gos, err := filepath.Glob(filepath.Join(d, "*.go"))
		if err != nil {
			return nil, err
		}
		sort.Strings(gos)
		for _, f := range gos {
			if !strings.HasSuffix(f, "_test.go") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !(os.IsNotExist(err) && strings.HasSuffix(f, "go.sum")) {
			return nil, fmt.Errorf("hashing sources: %w", err)
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:20]

	set := &pluginSet{paths: map[string]string{}, cached: true}
	var missing []string
	for _, n := range pluginNames {
		p := filepath.Join(dir, n+"-"+sum+".wasm")
		set.paths[n] = p
		if fi, err := os.Stat(p); err != nil || fi.Size() < 8 {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		set.took = time.Since(start)
		return set, nil
	}
	set.cached = false
	fmt.Fprintf(progress, "weft demo: building the plugins %s from plugins/ (once: cached in %s)...\n", strings.Join(missing, ", "), dir)
	tmp, err := os.MkdirTemp(dir, "build-*")
	if err != nil {
		return nil, fmt.Errorf("plugin cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	build := func(n string) error {
		out := filepath.Join(tmp, n+".wasm")
		if _, err := goCmd(ctx, root, env, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./plugins/"+n); err != nil {
			return fmt.Errorf("building plugin %s: %w", n, err)
		}
		if err := os.Rename(out, set.paths[n]); err != nil {
			return fmt.Errorf("plugin %s: caching: %w", n, err)
		}
		return nil
	}
	// The first build compiles the standard library and the SDK for wasip1;
	// the others then mostly link, so they run side by side.
	if err := build(missing[0]); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(missing))
	for i, n := range missing[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i+1] = build(n)
		}()
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
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == rootModule {
			if _, err := os.Stat(filepath.Join(dir, "plugins")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s is not inside the Weft source tree (the plugins are built from its plugins/; run the demo from the repository: go run ./cmd/weft demo)", wd)
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// goCmd runs the go command in dir and returns its standard output; a
// failure carries the command and its error output.
func goCmd(ctx context.Context, dir string, env []string, goBin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, pluginBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
