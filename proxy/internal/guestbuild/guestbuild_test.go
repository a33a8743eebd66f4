package guestbuild

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestGoSDKBuildsAProxyWasmModule(t *testing.T) {
	wasm := GoSDK(t, "headers")
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
	if string(wasm[:4]) != "\x00asm" || !bytes.Contains(wasm, []byte("answer")) {
		t.Fatalf("unexpected output % x", wasm)
	}
}

func TestBadGuestNamesAreRefused(t *testing.T) {
	for _, name := range []string{"../headers", "", ".hidden", "a/b"} {
		if _, err := guestsRoot(name); err == nil {
			t.Errorf("guestsRoot(%q) accepted", name)
		}
	}
}
