package interrupt_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/wasm/interrupt"
)

// A guest spinning in a loop, compiled without wazero's termination
// checks, stops at its next iteration once the flag is set.
func TestFlagStopsASpinningGuest(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "spin.wat")
	if err := os.WriteFile(src, []byte(`(module
  (memory 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "spin")
    (loop $l
      (global.set $n (i32.add (global.get $n) (i32.const 1)))
      (br $l)))
  (func (export "count") (param i32) (result i32)
    (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get 0)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $i)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(guestbuild.WAT(t, src))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false))
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	flag, ok := mod.ExportedGlobal(interrupt.GlobalName).(api.MutableGlobal)
	if !ok {
		t.Fatalf("no mutable %s global", interrupt.GlobalName)
	}
	// Loops run as written while the flag is clear.
	res, err := mod.ExportedFunction("count").Call(ctx, 1000)
	if err != nil || res[0] != 1000 {
		t.Fatalf("count(1000) = %v, %v", res, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it spin: the test is that it stops, not when
	// A garbage collection's stop-the-world completes while the guest
	// spins (it steps out into Go every YieldEvery iterations); without
	// that, this would wait for ever.
	runtime.GC()
	flag.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin ended with %v, want the interrupt's unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the flag did not stop the loop")
	}
}

// Every guest the tests load is rewritten (none falls back to wazero's
// termination checks), and the rewrite still compiles: WAT fixtures, a Go
// guest built with the public Proxy-Wasm Go SDK and one with Weft's SDK.
func TestInstrumentsEveryTestGuest(t *testing.T) {
	mods := map[string][]byte{
		"gosdk/noop":          guestbuild.GoSDK(t, "noop"),
		"weftsdk/grpccallout": guestbuild.WeftSDK(t, "grpccallout"),
	}
	wats, _ := filepath.Glob(filepath.Join("..", "testdata", "*.wat"))
	for _, w := range wats {
		mods[filepath.Base(w)] = guestbuild.WAT(t, w)
	}
	ctx := context.Background()
	// The proxy's own compile cache: these are the modules it compiles.
	cache, err := wazero.NewCompilationCacheWithDir(guestbuild.CompileCacheDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(ctx)
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
	defer r.Close(ctx)
	for name, m := range mods {
		code, err := interrupt.Instrument(m)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		cm, err := r.CompileModule(ctx, code)
		if err != nil {
			t.Errorf("%s: the rewritten module does not compile: %v", name, err)
			continue
		}
		if _, ok := cm.ExportedFunctions()["proxy_on_context_create"]; !ok && strings.HasPrefix(name, "gosdk") {
			t.Errorf("%s: the rewritten module lost its exports", name)
		}
		_ = cm.Close(ctx)
	}
}

// Bytes that are not a module, or a module using an opcode the rewrite
// does not know, are refused rather than rewritten wrongly.
func TestRefusesWhatItCannotDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"not wasm", []byte("hello")},
		{"component", []byte("\x00asm\x0d\x00\x01\x00")},
		{"truncated section", []byte("\x00asm\x01\x00\x00\x00\x0a\x10\x01")},
		// one function whose body uses the unassigned opcode 0x27
		{"unknown opcode", []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x05\x03\x01\x00\x01\x0a\x05\x01\x03\x00\x27\x0b")},
		// a loop, but no memory to step out into Go with
		{"no memory", []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x07\x01\x05\x00\x03\x40\x0b\x0b")},
	} {
		if _, err := interrupt.Instrument(tc.in); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func FuzzInstrument(f *testing.F) {
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x05\x03\x01\x00\x01\x0a\x09\x01\x07\x00\x03\x40\x0c\x00\x0b\x0b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := interrupt.Instrument(b)
		if err != nil {
			return
		}
		if len(out) < len(b) {
			t.Fatalf("the rewrite shrank the module: %d -> %d", len(b), len(out))
		}
	})
}

// The flag is read where the countdown reaches zero: the host stops a
// guest at its next loop iteration by setting the flag and then the
// countdown to 1, and a flag alone is seen within YieldEvery iterations.
func TestFlagIsReadWhenTheCountdownEnds(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "count.wat")
	if err := os.WriteFile(src, []byte(`(module
  (memory 1)
  (func (export "count") (param i32) (result i32)
    (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get 0)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $i)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(guestbuild.WAT(t, src))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false))
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	flag, ok1 := mod.ExportedGlobal(interrupt.GlobalName).(api.MutableGlobal)
	countdown, ok2 := mod.ExportedGlobal(interrupt.CountdownName).(api.MutableGlobal)
	if !ok1 || !ok2 {
		t.Fatal("the flag or the countdown is not an exported mutable global")
	}
	count := mod.ExportedFunction("count")
	// Flag and countdown 1: the first iteration traps.
	flag.Set(1)
	countdown.Set(1)
	if _, err := count.Call(ctx, 5); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("flag and countdown 1: count ended with %v, want the unreachable trap", err)
	}
	// The flag alone: loops run until the countdown ends, then trap.
	countdown.Set(interrupt.YieldEvery)
	if res, err := count.Call(ctx, 5); err != nil || res[0] != 5 {
		t.Fatalf("flag, countdown full: count(5) = %v, %v; want 5 (the flag waits for the countdown)", res, err)
	}
	if _, err := count.Call(ctx, 2*interrupt.YieldEvery); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("flag alone: count(2×YieldEvery) ended with %v, want the unreachable trap", err)
	}
	// Cleared: loops run as written again, through many steps out.
	flag.Set(0)
	if res, err := count.Call(ctx, 3*interrupt.YieldEvery); err != nil || res[0] != 3*interrupt.YieldEvery {
		t.Fatalf("flag clear: count = %v, %v", res, err)
	}
}

// A guest that recurses without a loop and without going deep (a
// recursive fib, a pair of mutually recursive functions) passes the check
// at the entry of the function its cycle re-enters: results are unchanged
// while the flag is clear, a garbage collection completes while it runs,
// and the flag stops it.
func TestFlagStopsARecursiveGuest(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "fib.wat")
	if err := os.WriteFile(src, []byte(`(module
  (import "env" "nothing" (func $nothing))
  (memory 1)
  (func $fib (export "fib") (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (i64.add
        (call $fib (i64.sub (local.get $n) (i64.const 1)))
        (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func $ping (export "ping") (param $n i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (i64.const 1))
      (else (i64.add
        (call $pong (i64.sub (local.get $n) (i64.const 1)))
        (call $pong (i64.sub (local.get $n) (i64.const 1)))))))
  (func $pong (param $n i64) (result i64)
    (call $nothing)
    (call $ping (local.get $n))))`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(guestbuild.WAT(t, src))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false))
	defer r.Close(ctx)
	if _, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().WithFunc(func() {}).Export("nothing").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	compiled, err := r.CompileModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]uint64{"fib": {20, 6765}, "ping": {10, 1024}} {
		// A module per case: one that trapped is replaced, as the host does.
		mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(name))
		if err != nil {
			t.Fatal(err)
		}
		flag := mod.ExportedGlobal(interrupt.GlobalName).(api.MutableGlobal)
		if res, err := mod.ExportedFunction(name).Call(ctx, want[0]); err != nil || res[0] != want[1] {
			t.Fatalf("%s(%d) = %v, %v; want %d", name, want[0], res, err, want[1])
		}
		done := make(chan error, 1)
		go func() {
			_, err := mod.ExportedFunction(name).Call(ctx, 90) // for ever, 90 frames deep
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // let it run: the test is that it stops, not when
		runtime.GC()                      // waits for ever unless the guest steps out into Go
		flag.Set(1)
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("%s ended with %v, want the interrupt's unreachable trap", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the flag did not stop %s", name)
		}
	}
}
