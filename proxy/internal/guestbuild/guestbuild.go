package guestbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// rootModule is the module path of the repository's go.mod; guests live
// below it in guestsDir.
const (
	rootModule = "github.com/weftmesh/weft"
	guestsDir  = "proxy/wasm/testdata/guests"
	// buildTimeout bounds one toolchain run (a cold module download included).
	buildTimeout = 5 * time.Minute
)

// Skip messages: a missing toolchain skips the test instead of failing it.
const (
	npmMissing  = "npm not found: install Node.js/npm (CI installs it) to run AssemblyScript conformance"
	wabtMissing = "wat2wasm not found: apt-get install wabt"
	goMissing   = "go not found on PATH: the Go toolchain is needed to build Go guests"
)

// skipError is returned when a toolchain is missing: callers skip, not fail.
type skipError struct{ msg string }

func (e *skipError) Error() string { return e.msg }

// result is one build, shared by every caller in the process.
type result struct {
	once sync.Once
	wasm []byte
	err  error
}

var (
	mu      sync.Mutex
	results = map[string]*result{}
)

// memo runs build once per key per process and returns its outcome.
func memo(key string, build func() ([]byte, error)) ([]byte, error) {
	mu.Lock()
	r, ok := results[key]
	if !ok {
		r = &result{}
		results[key] = r
	}
	mu.Unlock()
	r.once.Do(func() { r.wasm, r.err = build() })
	return r.wasm, r.err
}

// GoSDK returns the Go guest guests/gosdk/<name> built with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared. It fails t when the build fails.
func GoSDK(t testing.TB, name string) []byte {
	t.Helper()
	return finish(t, "Go guest "+name, func() ([]byte, error) { return buildGo(name) })
}

// AssemblyScript returns the AssemblyScript guest guests/as/assembly/<name>.ts
// built with the package's pinned assemblyscript and @solo-io/proxy-runtime.
// It skips t when npm is missing and fails it when the build fails.
func AssemblyScript(t testing.TB, name string) []byte {
	t.Helper()
	return finish(t, "AssemblyScript guest "+name, func() ([]byte, error) { return buildAS(name) })
}

// WAT returns the module assembled from the WAT file at path (absolute, or
// relative to the test's working directory) with wat2wasm. It skips t when
// wat2wasm is missing and fails it when the file does not assemble.
func WAT(t testing.TB, path string) []byte {
	t.Helper()
	return finish(t, "WAT "+path, func() ([]byte, error) { return buildWAT(path) })
}

func finish(t testing.TB, what string, build func() ([]byte, error)) []byte {
	t.Helper()
	start := time.Now()
	wasm, err := build()
	var skip *skipError
	switch {
	case errors.As(err, &skip):
		t.Skip(skip.msg)
	case err != nil:
		t.Fatalf("guestbuild: %s: %v", what, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("guestbuild: %s ready in %v", what, d.Round(time.Millisecond))
	}
	return wasm
}

func buildGo(name string) ([]byte, error) {
	return memo("go:"+name, func() ([]byte, error) {
		if err := checkName(name); err != nil {
			return nil, err
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			return nil, &skipError{goMissing}
		}
		dir, err := guestsRoot()
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(dir, "gosdk", name)); err != nil {
			return nil, fmt.Errorf("no guest %q in %s: %w", name, filepath.Join(dir, "gosdk"), err)
		}
		goVersion, err := run(dir, nil, goBin, "env", "GOVERSION")
		if err != nil {
			return nil, err
		}
		// The whole nested module is hashed (not only the guest's folder), so a
		// change in a shared package or in go.sum rebuilds every guest.
		h := sha256.New()
		fmt.Fprintf(h, "gosdk v1\n%s\n%s\n", name, bytes.TrimSpace(goVersion))
		if err := hashTree(h, dir, func(rel string) bool {
			return !strings.HasPrefix(rel, "as/") && (strings.HasSuffix(rel, ".go") || rel == "go.mod" || rel == "go.sum")
		}); err != nil {
			return nil, err
		}
		return cached("go-"+name, h.Sum(nil), func(out string) error {
			env := []string{"GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0"}
			_, err := run(dir, env, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./gosdk/"+name)
			return err
		})
	})
}

func buildAS(name string) ([]byte, error) {
	return memo("as:"+name, func() ([]byte, error) {
		if err := checkName(name); err != nil {
			return nil, err
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			return nil, &skipError{npmMissing}
		}
		node, err := exec.LookPath("node")
		if err != nil {
			return nil, &skipError{npmMissing}
		}
		root, err := guestsRoot()
		if err != nil {
			return nil, err
		}
		pkgDir := filepath.Join(root, "as")
		src := filepath.Join(pkgDir, "assembly", name+".ts")
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("no AssemblyScript guest %q: %w", name, err)
		}
		deps, err := asDependencies(npm, pkgDir)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		fmt.Fprintf(h, "as v1\n%s\n%s\n", name, deps)
		if err := hashTree(h, pkgDir, func(rel string) bool {
			return strings.HasPrefix(rel, "assembly/") && strings.HasSuffix(rel, ".ts")
		}); err != nil {
			return nil, err
		}
		return cached("as-"+name, h.Sum(nil), func(out string) error {
			work := filepath.Dir(out) // a fresh directory per build
			if err := copyTree(filepath.Join(pkgDir, "assembly"), filepath.Join(work, "assembly")); err != nil {
				return err
			}
			// asc resolves "@solo-io/proxy-runtime" through node_modules next to
			// the sources: point it at the shared, cached install.
			if err := os.Symlink(filepath.Join(deps, "node_modules"), filepath.Join(work, "node_modules")); err != nil {
				return err
			}
			asc := filepath.Join(deps, "node_modules", "assemblyscript", "bin", "asc")
			_, err = run(work, nil, node, asc, "assembly/"+name+".ts", "--use", "abort=abort_proc_exit", "-O3", "-b", out)
			return err
		})
	})
}

// asDependencies installs the npm dependencies of the package in pkgDir
// (package.json and package-lock.json only) into a cache directory named by
// their digest and returns that directory.
func asDependencies(npm, pkgDir string) (string, error) {
	h := sha256.New()
	files := []string{"package.json", "package-lock.json"}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(pkgDir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(cache, "as-deps-"+hex.EncodeToString(h.Sum(nil))[:16])
	marker := filepath.Join(final, ".installed")
	if _, err := os.Stat(marker); err == nil {
		return final, nil
	}
	tmp, err := os.MkdirTemp(cache, "as-deps-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for _, f := range files {
		if err := copyFile(filepath.Join(pkgDir, f), filepath.Join(tmp, f)); err != nil {
			return "", err
		}
	}
	if _, err := run(tmp, nil, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
		return "", fmt.Errorf("installing AssemblyScript toolchain: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".installed"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process installed it first: use theirs.
		if _, statErr := os.Stat(marker); statErr == nil {
			return final, nil
		}
		// A stale half-made directory without marker: replace it.
		os.RemoveAll(final)
		if err := os.Rename(tmp, final); err != nil {
			return "", err
		}
	}
	return final, nil
}

func buildWAT(path string) ([]byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return memo("wat:"+abs, func() ([]byte, error) {
		wat2wasm, err := exec.LookPath("wat2wasm")
		if err != nil {
			return nil, &skipError{wabtMissing}
		}
		src, err := os.ReadFile(abs)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		fmt.Fprintf(h, "wat v1\n")
		h.Write(src)
		name := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
		return cached("wat-"+name, h.Sum(nil), func(out string) error {
			_, err := run(filepath.Dir(abs), nil, wat2wasm, abs, "-o", out)
			return err
		})
	})
}

// cached returns the cache entry for (prefix, sum), building it with build
// (which writes to the path it is given) when missing. The entry appears
// atomically: build writes a temporary file that is then renamed.
func cached(prefix string, sum []byte, build func(out string) error) ([]byte, error) {
	cache, err := cacheDir()
	if err != nil {
		return nil, err
	}
	final := filepath.Join(cache, prefix+"-"+hex.EncodeToString(sum)[:24]+".wasm")
	if b, err := os.ReadFile(final); err == nil && isWasm(b) {
		return b, nil
	}
	work, err := os.MkdirTemp(cache, prefix+"-*.tmp")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "module.wasm")
	if err := build(out); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("%s: the toolchain wrote no module: %w", prefix, err)
	}
	if !isWasm(b) {
		return nil, fmt.Errorf("%s: the toolchain wrote no Wasm module (%d bytes)", prefix, len(b))
	}
	if err := os.Rename(out, final); err != nil {
		return nil, err
	}
	return b, nil
}

func isWasm(b []byte) bool { return len(b) >= 8 && string(b[:4]) == "\x00asm" }

func cacheDir() (string, error) {
	dir := os.Getenv("WEFT_GUEST_CACHE")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "weft-guest-cache")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("guest cache: %w", err)
	}
	return dir, nil
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// guestsRoot finds the guests directory from the repository root: the
// nearest go.mod up from the working directory that declares rootModule.
// It works from any package's test directory.
func guestsRoot() (string, error) {
	rootOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for dir := wd; ; {
			b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && modulePath(b) == rootModule {
				rootDir = filepath.Join(dir, filepath.FromSlash(guestsDir))
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod of module %s above %s", rootModule, wd)
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// checkName refuses names that could escape the guests directory.
func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("bad guest name %q: want a plain directory or file name", name)
	}
	return nil
}

// hashTree writes into h the relative path and content of every regular file
// under dir for which keep returns true, in a stable order. node_modules is
// never entered.
func hashTree(h io.Writer, dir string, keep func(rel string) bool) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "node_modules" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); keep(rel) {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hashing %s: %w", dir, err)
	}
	sort.Strings(files)
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// run runs a toolchain command in dir with extra environment variables and
// returns its standard output; on failure the error carries the command and
// its combined output.
func run(dir string, env []string, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s (in %s): %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), dir, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}
