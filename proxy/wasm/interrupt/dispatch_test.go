package interrupt_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/wasm/interrupt"
)

// weft_dispatch calls the export its selector names with as many of its
// arguments as that export takes, returns its result (0 for none), and
// traps for a selector whose export is missing or does not fit the rule
// (an i64 parameter, here): the host calls those directly.
func TestDispatchCallsTheSelectedExport(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "cb.wat")
	if err := os.WriteFile(src, []byte(`(module
  (import "env" "log" (func $log (param i32)))
  (memory 1)
  (global $last (mut i32) (i32.const 0))
  (func (export "last") (result i32) (global.get $last))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $last (i32.add (i32.mul (local.get 0) (i32.const 100)) (local.get 1))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.add (i32.add (i32.mul (local.get 0) (i32.const 100)) (i32.mul (local.get 1) (i32.const 10))) (local.get 2)))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func (export "proxy_on_log") (param i64))
  (func (export "proxy_on_delete") (param i32) (call $log (local.get 0))))`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(guestbuild.WAT(t, src))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	var logged []uint32
	if _, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func(v uint32) { logged = append(logged, v) }).Export("log").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	mod, err := r.Instantiate(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	d := mod.ExportedFunction(interrupt.DispatchName)
	if d == nil {
		t.Fatalf("no %s export", interrupt.DispatchName)
	}
	sel := func(name string) uint64 {
		for i, n := range interrupt.Dispatched {
			if n == name {
				return uint64(i)
			}
		}
		t.Fatalf("%s is not dispatched", name)
		return 0
	}
	call := func(name string, a, b, c uint64) (uint64, error) {
		st := []uint64{sel(name), a, b, c}
		err := d.CallWithStack(ctx, st)
		return st[0], err
	}
	if res, err := call("proxy_on_request_headers", 3, 4, 5); err != nil || res != 345 {
		t.Errorf("request headers: %d, %v; want 345", res, err)
	}
	if res, err := call("proxy_on_context_create", 7, 2, 9); err != nil || res != 0 {
		t.Errorf("context create: %d, %v; want 0 (no result)", res, err)
	}
	if last, _ := mod.ExportedFunction("last").Call(ctx); last[0] != 702 {
		t.Errorf("context create saw %d, want 702 (two arguments)", last[0])
	}
	if res, err := call("proxy_on_done", 41, 0, 0); err != nil || res != 42 {
		t.Errorf("done: %d, %v; want 42", res, err)
	}
	if _, err := call("proxy_on_delete", 8, 0, 0); err != nil || len(logged) != 1 || logged[0] != 8 {
		t.Errorf("delete: %v, host saw %v; want [8]", err, logged)
	}
	for _, name := range []string{"proxy_on_log", "proxy_on_response_body"} { // i64; missing
		if _, err := call(name, 1, 2, 3); err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("%s through the dispatcher: %v, want an unreachable trap", name, err)
		}
	}
	if _, err := d.Call(ctx, uint64(len(interrupt.Dispatched)), 0, 0, 0); err == nil {
		t.Error("a selector past the list did not trap")
	}
	if !interrupt.Dispatchable([]byte{0x7f, 0x7f}, nil) || interrupt.Dispatchable([]byte{0x7e}, nil) ||
		interrupt.Dispatchable([]byte{0x7f, 0x7f, 0x7f, 0x7f}, nil) || interrupt.Dispatchable(nil, []byte{0x7f, 0x7f}) {
		t.Error("Dispatchable does not follow its rule")
	}
}
