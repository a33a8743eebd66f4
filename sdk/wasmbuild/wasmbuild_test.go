package wasmbuild

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// goGuest writes a tiny Go guest module (its own go.mod, no dependencies)
// exporting answer() = n and returns its directory.
func goGuest(t *testing.T, n string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module example.com/guest\n\ngo 1.24\n",
		"main.go": "package main\n\nfunc main() {}\n\n//go:wasmexport answer\nfunc answer() int32 { return " + n + " }\n",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGoBuildIsCachedOnDisk(t *testing.T) {
	ctx := context.Background()
	cache, src := t.TempDir(), goGuest(t, "42")
	first, err := Go(ctx, Options{Dir: src, Package: ".", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || !isWasm(first.Wasm) || !bytes.Contains(first.Wasm, []byte("answer")) {
		t.Fatalf("first build: cached=%v, %d bytes, export answer: %v", first.Cached, len(first.Wasm), bytes.Contains(first.Wasm, []byte("answer")))
	}
	if filepath.Dir(first.Path) != cache {
		t.Errorf("module at %s, want it in %s", first.Path, cache)
	}
	info, err := os.Stat(first.Path)
	if err != nil {
		t.Fatal(err)
	}

	// A fresh process (no memo) with the same sources: taken from the disk.
	memo.Clear()
	second, err := Go(ctx, Options{Dir: src, Package: ".", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Cached || second.Path != first.Path || !bytes.Equal(second.Wasm, first.Wasm) {
		t.Fatalf("second build: cached=%v path %s (first %s), same bytes %v", second.Cached, second.Path, first.Path, bytes.Equal(second.Wasm, first.Wasm))
	}
	if again, err := os.Stat(first.Path); err != nil || !again.ModTime().Equal(info.ModTime()) {
		t.Errorf("cache entry rewritten (%v)", err)
	}

	// Same process, same Options: the memo, and still reported cached.
	third, err := Go(ctx, Options{Dir: src, Package: ".", CacheDir: cache})
	if err != nil || !third.Cached || &third.Wasm[0] != &second.Wasm[0] {
		t.Fatalf("third build: err %v, cached=%v, shared bytes %v", err, third.Cached, err == nil && &third.Wasm[0] == &second.Wasm[0])
	}

	// Edited sources: a new entry, built.
	memo.Clear()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n\n//go:wasmexport answer\nfunc answer() int32 { return 43 }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited, err := Go(ctx, Options{Dir: src, Package: ".", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if edited.Cached || edited.Path == first.Path || bytes.Equal(edited.Wasm, first.Wasm) {
		t.Fatalf("edited build: cached=%v, path %s (was %s)", edited.Cached, edited.Path, first.Path)
	}
	assertNoTemporaries(t, cache)
}

// TestConcurrentBuildsAgree builds the same guest from two goroutines that
// share nothing in this process (their cache directories are the same
// directory under two names, as two processes would be): both get the same
// bytes and the cache keeps one complete entry.
func TestConcurrentBuildsAgree(t *testing.T) {
	ctx := context.Background()
	cache, src := t.TempDir(), goGuest(t, "7")
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(cache, alias); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	mods := make([]Module, 2)
	errs := make([]error, 2)
	for i, dir := range []string{cache, alias} {
		wg.Go(func() { mods[i], errs[i] = Go(ctx, Options{Dir: src, Package: ".", CacheDir: dir}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(mods[0].Wasm, mods[1].Wasm) || filepath.Base(mods[0].Path) != filepath.Base(mods[1].Path) {
		t.Fatalf("concurrent builds differ: %s (%d bytes) and %s (%d bytes)", mods[0].Path, len(mods[0].Wasm), mods[1].Path, len(mods[1].Wasm))
	}
	onDisk, err := os.ReadFile(mods[0].Path)
	if err != nil || !bytes.Equal(onDisk, mods[0].Wasm) {
		t.Fatalf("cache entry does not hold the module (%v)", err)
	}
	assertNoTemporaries(t, cache)
}

func assertNoTemporaries(t *testing.T, cache string) {
	t.Helper()
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary %s left in the cache", e.Name())
		}
	}
}

func TestMissingToolchainIsTyped(t *testing.T) {
	src := goGuest(t, "1")
	t.Setenv("PATH", t.TempDir()) // no go, npm, clang or wat2wasm
	t.Setenv("WEFT_RUSTC", filepath.Join(t.TempDir(), "no-rustc"))
	t.Setenv("WEFT_ZIG", "")
	o := Options{Dir: src, Package: ".", CacheDir: t.TempDir()}
	builds := map[string]func(context.Context, Options) (Module, error){
		"go": Go, "assemblyscript": AssemblyScript, "c": C, "rust": Rust, "zig": Zig, "wat": WAT,
	}
	for name, build := range builds {
		_, err := build(context.Background(), o)
		var missing *MissingToolchainError
		if !errors.Is(err, ErrToolchainMissing) || !errors.As(err, &missing) {
			t.Errorf("%s: got %v, want a *MissingToolchainError", name, err)
			continue
		}
		if missing.Tool == "" || missing.Install == "" || !strings.Contains(err.Error(), missing.Install) {
			t.Errorf("%s: error %q lacks the tool or the install hint", name, err)
		}
	}
}

func TestBuildFailuresAreErrors(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	if _, err := Go(ctx, Options{Dir: goGuest(t, "2"), Package: "./no-such-package", CacheDir: cache}); err == nil || errors.Is(err, ErrToolchainMissing) {
		t.Errorf("unknown package: got %v, want a build error", err)
	}
	if _, err := Go(ctx, Options{Dir: t.TempDir(), CacheDir: cache}); err == nil {
		t.Error("empty Package accepted")
	}
	broken := goGuest(t, `"not an int"`)
	if _, err := Go(ctx, Options{Dir: broken, Package: ".", CacheDir: cache}); err == nil || !strings.Contains(err.Error(), broken) {
		t.Errorf("broken source: got %v, want an error naming %s", err, broken)
	}
}

func TestCachedRejectsNonWasmOutput(t *testing.T) {
	b := &builder{ctx: context.Background(), lang: "unit", opts: Options{Package: "x"}, dir: t.TempDir(), cache: t.TempDir()}
	_, err := b.cached(b.digest(), func(out string) error { return os.WriteFile(out, []byte("not wasm"), 0o644) })
	if err == nil {
		t.Fatal("non-Wasm output accepted")
	}
	assertNoTemporaries(t, b.cache)
}

func TestWATBuild(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tiny.wat"), []byte(`(module (func (export "answer") (result i32) i32.const 42))`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := WAT(context.Background(), Options{Dir: dir, Package: "tiny.wat", CacheDir: t.TempDir()})
	if errors.Is(err, ErrToolchainMissing) {
		t.Skip(err)
	}
	if err != nil || !isWasm(m.Wasm) || !bytes.Contains(m.Wasm, []byte("answer")) {
		t.Fatalf("WAT: %v, % x", err, m.Wasm)
	}
}
