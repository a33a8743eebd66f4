package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// Timeout bounds one toolchain run.
const Timeout = 5 * time.Minute

type result struct {
	once sync.Once
	wasm []byte
	err  error
}

var (
	mu      sync.Mutex
	results = map[string]*result{}
)

// Go returns the Wasm module of the Go package pkg (an import path, or a
// path relative to the module root such as "./plugins/auth"), building it
// when its sources changed. Safe for concurrent use, and across processes
// (cache entries are renamed into place).
func Go(pkg string) ([]byte, error) {
	mu.Lock()
	r := results[pkg]
	if r == nil {
		r = &result{}
		results[pkg] = r
	}
	mu.Unlock()
	r.once.Do(func() { r.wasm, r.err = buildGo(pkg) })
	return r.wasm, r.err
}

var guestEnv = []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"}

func buildGo(pkg string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build %s: go command not found: %w", pkg, err)
	}
	gomod, err := run("", nil, goBin, "env", "GOMOD")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	modFile := strings.TrimSpace(string(gomod))
	if modFile == "" || modFile == os.DevNull {
		return nil, fmt.Errorf("build %s: not inside a Go module", pkg)
	}
	root := filepath.Dir(modFile)
	version, err := run(root, nil, goBin, "env", "GOVERSION")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	dirs, err := run(root, guestEnv, goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", pkg)
	if err != nil {
		return nil, fmt.Errorf("build %s: listing sources: %w", pkg, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "weft guest v1\n%s\n%s\n", pkg, bytes.TrimSpace(version))
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := hashFile(h, filepath.Join(root, f)); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	list := strings.Fields(string(dirs))
	sort.Strings(list)
	for _, d := range list {
		files, err := filepath.Glob(filepath.Join(d, "*.go"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			if err := hashFile(h, f); err != nil {
				return nil, fmt.Errorf("build %s: %w", pkg, err)
			}
		}
	}
	cache, err := cacheDir()
	if err != nil {
		return nil, err
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(strings.TrimPrefix(pkg, "./"))
	final := filepath.Join(cache, name+"-"+hex.EncodeToString(h.Sum(nil))[:20]+".wasm")
	if b, err := os.ReadFile(final); err == nil && len(b) > 0 {
		return b, nil
	}
	tmp, err := os.MkdirTemp(cache, "build-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "m.wasm")
	if _, err := run(root, guestEnv, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg); err != nil {
		return nil, fmt.Errorf("build %s: %w", pkg, err)
	}
	if err := os.Rename(out, final); err != nil {
		return nil, fmt.Errorf("build %s: caching: %w", pkg, err)
	}
	return os.ReadFile(final)
}

func hashFile(h io.Writer, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(h, "%s %d\n", filepath.Base(path), len(b))
	_, err = h.Write(b)
	return err
}

func cacheDir() (string, error) {
	dir := os.Getenv("WEFT_GUEST_CACHE")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "weft-sdk-guests")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("guest cache %s: %w", dir, err)
	}
	return dir, nil
}

// run runs a command and returns its stdout; a failure carries stderr.
func run(dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
