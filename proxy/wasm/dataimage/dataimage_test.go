package dataimage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/weftmesh/weft/sdk/wasmbuild"
)

func wat(t *testing.T, src string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.wat")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := wasmbuild.WAT(context.Background(), wasmbuild.Options{Package: p})
	if err != nil {
		t.Skip(err)
	}
	return m.Wasm
}

// TestSplit: the image holds every segment at its offset (zeros between),
// and the module without its segments, given the image as its initial
// memory, reads what the original reads.
func TestSplit(t *testing.T) {
	module := wat(t, `(module
  (memory (export "memory") 2)
  (data (i32.const 100) "hello")
  (data (i32.const 70000) "world")
  (data (memory 0) (i32.const 8) "\01\02")
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))`)
	code, image, ok, err := Split(module)
	if err != nil || !ok {
		t.Fatalf("Split: ok %v, err %v", ok, err)
	}
	if len(image) != 70005 || string(image[100:105]) != "hello" || string(image[70000:]) != "world" ||
		image[8] != 1 || image[9] != 2 || image[0] != 0 || image[200] != 0 {
		t.Fatalf("image wrong: %d bytes", len(image))
	}
	if bytes.Contains(code, []byte("hello")) || len(code) >= len(module) {
		t.Error("the segments are still in the module")
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, code)
	if err != nil {
		t.Fatalf("the split module does not instantiate: %v", err)
	}
	if v, _ := mod.Memory().Read(100, 5); string(v) != "\x00\x00\x00\x00\x00" {
		t.Errorf("split module's memory at 100: %q, want zeros", v)
	}
	mod.Memory().Write(0, image)
	res, err := mod.ExportedFunction("load").Call(ctx, 70001)
	if err != nil || res[0] != 'o' {
		t.Errorf("load(70001) = %v, %v; want 'o'", res, err)
	}
}

// TestSplitRefuses: modules of another form are left as they are.
func TestSplitRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"passive segment":  `(module (memory 1) (data "x") (func (export "f") (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1))))`,
		"global offset":    `(module (import "env" "g" (global i32)) (memory 1) (data (global.get 0) "x"))`,
		"imported memory":  `(module (import "env" "m" (memory 1)) (data (i32.const 0) "x"))`,
		"past the initial": `(module (memory 1 2) (data (i32.const 65535) "xy"))`,
		"no data":          `(module (memory 1))`,
	} {
		module := wat(t, src)
		code, image, ok, err := Split(module)
		if ok || image != nil || !bytes.Equal(code, module) {
			t.Errorf("%s: split (ok %v, err %v)", name, ok, err)
		}
	}
	if _, _, ok, err := Split([]byte("not wasm")); ok || err == nil {
		t.Errorf("not a module: ok %v, err %v", ok, err)
	}
}
