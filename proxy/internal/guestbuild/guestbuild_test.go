package guestbuild

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGoSDKBuildsAProxyWasmModule(t *testing.T) {
	wasm := GoSDK(t, "headers")
	if !isWasm(wasm) {
		t.Fatalf("not a Wasm module: % x", wasm[:min(8, len(wasm))])
	}
	for _, export := range []string{"proxy_abi_version_0_2_0", "proxy_on_request_headers", "_initialize"} {
		if !bytes.Contains(wasm, []byte(export)) {
			t.Errorf("module has no %q", export)
		}
	}
	again := GoSDK(t, "headers")
	if &again[0] != &wasm[0] {
		t.Error("second GoSDK call in the same process rebuilt or reread the module")
	}
}

func TestAssemblyScriptBuildsAProxyWasmModule(t *testing.T) {
	wasm := AssemblyScript(t, "headers")
	for _, want := range []string{"proxy_abi_version_0_2_0", "proxy_on_request_headers", "wasi_unstable"} {
		if !bytes.Contains(wasm, []byte(want)) {
			t.Errorf("module has no %q", want)
		}
	}
}

func TestWATAssembles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.wat")
	if err := os.WriteFile(path, []byte(`(module (func (export "answer") (result i32) i32.const 42))`), 0o644); err != nil {
		t.Fatal(err)
	}
	wasm := WAT(t, path)
	if !isWasm(wasm) || !bytes.Contains(wasm, []byte("answer")) {
		t.Fatalf("unexpected output % x", wasm)
	}
}

func TestUnknownAndBadNamesFail(t *testing.T) {
	for _, name := range []string{"no-such-guest", "../headers", "", ".hidden"} {
		if _, err := buildGo(name); err == nil {
			t.Errorf("buildGo(%q) succeeded", name)
		}
	}
	var skip *skipError
	if _, err := buildAS("no-such-guest"); err == nil {
		t.Error(`buildAS("no-such-guest") succeeded`)
	} else if errors.As(err, &skip) {
		t.Log("npm missing; AssemblyScript name check not reached")
	}
}

func TestCachedBuildsOnceAndReusesTheDiskEntry(t *testing.T) {
	t.Setenv("WEFT_GUEST_CACHE", t.TempDir())
	var builds atomic.Int32
	module := []byte("\x00asm\x01\x00\x00\x00")
	build := func(out string) error {
		builds.Add(1)
		return os.WriteFile(out, module, 0o644)
	}
	sum := []byte("0123456789abcdef0123456789abcdef")

	// Concurrent builders of the same entry (as parallel test processes
	// would be) all get a complete module.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			b, err := cached("unit", sum, build)
			if err == nil && !bytes.Equal(b, module) {
				err = errors.New("got a different module")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	before := builds.Load()
	if before < 1 {
		t.Fatal("build never ran")
	}
	if _, err := cached("unit", sum, build); err != nil {
		t.Fatal(err)
	}
	if builds.Load() != before {
		t.Error("a cached entry was rebuilt")
	}
	entries, err := filepath.Glob(filepath.Join(os.Getenv("WEFT_GUEST_CACHE"), "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("cache dir holds %v, want exactly the one entry (no temporaries left)", entries)
	}
}

func TestCachedRejectsNonWasmOutput(t *testing.T) {
	t.Setenv("WEFT_GUEST_CACHE", t.TempDir())
	_, err := cached("bad", []byte("fedcba9876543210fedcba9876543210"), func(out string) error {
		return os.WriteFile(out, []byte("not wasm"), 0o644)
	})
	if err == nil {
		t.Fatal("non-Wasm output accepted")
	}
}
