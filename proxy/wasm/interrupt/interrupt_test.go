package interrupt_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

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
  (global $n (export "n") (mut i32) (i32.const 0))
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
	// Wait until it spins (its counter moves), so that the collection
	// and the flag below meet a running loop, not one yet to start.
	n := mod.ExportedGlobal("n")
	for deadline := time.Now().Add(10 * time.Second); n.Get() < 1000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the loop has not started after 10s (counter %d)", n.Get())
		}
	}
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
// termination checks), the rewrite still compiles, and its checks leave
// no cycle of calls unchecked: WAT fixtures, a Go guest built with the
// public Proxy-Wasm Go SDK and one with Weft's SDK.
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
		// Every cycle of calls passes a check (verified apart from the
		// placement's own computation).
		if st, err := interrupt.Placement(m); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if testing.Verbose() {
			t.Logf("%s: %+v", name, st)
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
	// A table with an element segment, a declarative one, a call_indirect
	// and a table.set of a ref.func.
	f.Add([]byte("\x00\x61\x73\x6d\x01\x00\x00\x00\x01\x09\x02\x60\x01\x7f\x01\x7f\x60\x00\x00\x03\x03\x02\x00\x01\x04\x04\x01\x70\x00\x02\x05\x03\x01\x00\x01\x09\x0b\x02\x00\x41\x00\x0b\x01\x00\x03\x00\x01\x00\x0a\x14\x02\x09\x00\x20\x00\x41\x00\x11\x00\x00\x0b\x08\x00\x41\x01\xd2\x00\x26\x00\x0b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := interrupt.Instrument(b)
		if err != nil {
			return
		}
		if len(out) < len(b) {
			t.Fatalf("the rewrite shrank the module: %d -> %d", len(b), len(out))
		}
		if _, err := interrupt.Placement(b); err != nil {
			t.Fatalf("rewritten, but: %v", err)
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

// indirectWAT recurses for ever without a loop only through call_indirect,
// in the ways compiled guests do: a function calling itself through a
// table ($fib, a function pointer or interface method); a call whose type
// is another, structurally equal, entry of the type section ($ping to
// $pong, which calls $ping directly: call_indirect matches types by
// structure); and through a second table filled at run time by table.init
// from a passive segment and table.set of a ref.func ($late).
const indirectWAT = `(module
  (memory 1)
  (type $t (func (param i64) (result i64)))
  (type $same (func (param i64) (result i64)))
  (table $fns 2 funcref)
  (table $runtime 2 funcref)
  (elem (table $fns) (i32.const 0) func $fib $pong)
  (elem $passive func $late)
  (elem declare func $late)
  (func $fib (type $t)
    (if (result i64) (i64.lt_u (local.get 0) (i64.const 2))
      (then (local.get 0))
      (else (i64.add
        (call_indirect $fns (type $t) (i64.sub (local.get 0) (i64.const 1)) (i32.const 0))
        (call_indirect $fns (type $t) (i64.sub (local.get 0) (i64.const 2)) (i32.const 0))))))
  (func $ping (type $t)
    (if (result i64) (i64.eqz (local.get 0))
      (then (i64.const 1))
      (else (i64.add
        (call_indirect $fns (type $same) (i64.sub (local.get 0) (i64.const 1)) (i32.const 1))
        (call_indirect $fns (type $same) (i64.sub (local.get 0) (i64.const 1)) (i32.const 1))))))
  (func $pong (type $t) (call $ping (local.get 0)))
  (func $late (type $t)
    (if (result i64) (i64.lt_u (local.get 0) (i64.const 2))
      (then (local.get 0))
      (else (i64.add
        (call_indirect $runtime (type $t) (i64.sub (local.get 0) (i64.const 1)) (i32.const 0))
        (call_indirect $runtime (type $t) (i64.sub (local.get 0) (i64.const 2)) (i32.const 1))))))
  (func (export "fill")
    (table.init $runtime $passive (i32.const 0) (i32.const 0) (i32.const 1))
    (table.set $runtime (i32.const 1) (ref.func $late)))
  (export "fib" (func $fib))
  (export "ping" (func $ping))
  (export "late" (func $late)))`

// stopsForEver calls fn(arg) of a fresh instance of compiled, where it
// runs for ever, and checks that a garbage collection completes meanwhile
// (the guest steps out into Go) and that the interrupt flag stops it with
// its unreachable trap. A guest that passes no check hangs the test.
func stopsForEver(t *testing.T, r wazero.Runtime, compiled wazero.CompiledModule, name, fn string, setup string, arg uint64) {
	t.Helper()
	ctx := context.Background()
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(name))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	if setup != "" {
		if _, err := mod.ExportedFunction(setup).Call(ctx); err != nil {
			t.Fatalf("%s: %v", setup, err)
		}
	}
	flag := mod.ExportedGlobal(interrupt.GlobalName).(api.MutableGlobal)
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction(fn).Call(ctx, arg)
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

// A guest recursing for ever through call_indirect only, without a loop
// and without going deep, passes the check before the indirect call:
// results are unchanged while the flag is clear, a garbage collection
// completes while it runs, and the flag stops it. Before the call graph
// took indirect calls in, the first GC hung this test.
func TestFlagStopsAnIndirectlyRecursiveGuest(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "indirect.wat")
	if err := os.WriteFile(src, []byte(indirectWAT), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(guestbuild.WAT(t, src))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false))
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fn, setup string
		arg, want uint64
	}{
		{"fib", "", 20, 6765},
		{"ping", "", 10, 1024},
		{"late", "fill", 20, 6765},
	} {
		mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(c.fn+"-ok"))
		if err != nil {
			t.Fatal(err)
		}
		if c.setup != "" {
			if _, err := mod.ExportedFunction(c.setup).Call(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if res, err := mod.ExportedFunction(c.fn).Call(ctx, c.arg); err != nil || res[0] != c.want {
			t.Fatalf("%s(%d) = %v, %v; want %d", c.fn, c.arg, res, err, c.want)
		}
		_ = mod.Close(ctx)
		stopsForEver(t, r, compiled, c.fn, c.fn, c.setup, 90) // 2^90 calls, 90 frames deep
	}
}

// A guest whose allocator calls a host function that hands over data
// (which the host allocates with that allocator, as Proxy-Wasm hosts do)
// recurses guest → host → allocator → host … for ever with no loop and no
// call cycle inside the module. The call graph counts every call to an
// import as a possible call of the exported allocator, so the allocator
// is checked at entry: results are unchanged while the flag is clear, and
// the flag stops it. Before, nothing checked it: it ran on, each nested
// host call growing the Go stack, until the process died of a stack
// overflow.
func TestFlagStopsAGuestReenteredThroughItsAllocator(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "alloc.wat")
	if err := os.WriteFile(src, []byte(`(module
  (import "env" "give" (func $give (param i32)))
  (memory 1)
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (if (local.get 0) (then (call $give (i32.sub (local.get 0) (i32.const 1)))))
    (i32.const 1024))
  (func (export "start") (param i64) (result i64)
    (call $give (i32.wrap_i64 (local.get 0)))
    (local.get 0)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := guestbuild.WAT(t, src)
	if st, err := interrupt.Placement(mod); err != nil || st.EntryChecks != 1 {
		t.Fatalf("placement %+v, %v: want the allocator checked at entry", st, err)
	}
	code, err := interrupt.Instrument(mod)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false))
	defer r.Close(ctx)
	// give(n) asks the guest's allocator for n bytes, as a host function
	// returning data does; the allocator's trap fails the host call too.
	// Every level of this recursion holds a host frame on the goroutine's
	// stack, so it is stopped by depth, not by time: at stopAt levels give
	// raises the flag as the watchdog does (flag, then countdown 1), and
	// the allocator's entry check must trap at its next entry. Stopped by
	// time, a loaded machine let it grow the Go stack to gigabytes (and Go
	// kills the process past 1 GB); past giveUp levels the check has
	// failed, and give ends the call with an error of its own.
	const stopAt, giveUp = 1_000, 2_000
	var depth, deepest int
	_, err = r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
			depth++
			defer func() { depth-- }()
			deepest = max(deepest, depth)
			switch depth {
			case stopAt:
				m.ExportedGlobal(interrupt.GlobalName).(api.MutableGlobal).Set(1)
				m.ExportedGlobal(interrupt.CountdownName).(api.MutableGlobal).Set(1)
			case giveUp:
				panic(fmt.Errorf("the raised flag did not stop the allocator's recursion after %d more levels", giveUp-stopAt))
			}
			if _, err := m.ExportedFunction("proxy_on_memory_allocate").Call(ctx, stack[0]); err != nil {
				panic(err)
			}
		}), []api.ValueType{api.ValueTypeI32}, nil).Export("give").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := r.CompileModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("alloc-ok"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := ok.ExportedFunction("start").Call(ctx, 50); err != nil || res[0] != 50 {
		t.Fatalf("start(50) = %v, %v; want 50", res, err)
	}
	_ = ok.Close(ctx)
	guest, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("alloc"))
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close(ctx)
	_, err = guest.ExportedFunction("start").Call(ctx, 1<<31-1)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("the recursion ended with %v, want the interrupt's unreachable trap", err)
	}
	if deepest != stopAt {
		t.Fatalf("the recursion went %d levels deep; the flag raised at %d should stop it at the allocator's next entry", deepest, stopAt)
	}
}

// A call to an import may call the allocator back (the host hands data
// over through it): an allocator that can reach an import, directly or
// through a table holding one, is checked at entry; one that calls nothing
// is not, whoever else calls the host.
func TestPlacementOfAllocatorReentry(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, wat string
		entry     int
	}{
		{"direct", `(module (import "env" "h" (func $h))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (call $h) (i32.const 0)))`, 1},
		{"malloc", `(module (import "env" "h" (func $h))
  (func $f (call $h))
  (func (export "malloc") (param i32) (result i32) (call $f) (i32.const 0)))`, 1},
		{"through a table", `(module (import "env" "h" (func $h))
  (table 1 funcref) (elem (i32.const 0) $h)
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (call_indirect (i32.const 0)) (i32.const 0)))`, 1},
		{"through a table filled in code", `(module (import "env" "h" (func $h))
  (table $t 1 funcref) (elem declare func $h)
  (func (export "fill") (table.set $t (i32.const 0) (ref.func $h)))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (call_indirect (i32.const 0)) (i32.const 0)))`, 1},
		{"not from the allocator", `(module (import "env" "h" (func $h))
  (func (export "on") (call $h))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0)))`, 0},
		{"not an allocator", `(module (import "env" "h" (func $h))
  (func (export "other") (param i32) (result i32) (call $h) (i32.const 0)))`, 0},
	} {
		src := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".wat")
		if err := os.WriteFile(src, []byte(c.wat), 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := interrupt.Placement(guestbuild.WAT(t, src))
		if err != nil || st.EntryChecks != c.entry {
			t.Errorf("%s: %+v, %v; want %d entry checks", c.name, st, err, c.entry)
		}
	}
}

// A guest that tail-calls itself through return_call_indirect runs for
// ever in constant stack, like a loop with no loop header: it is stopped
// too. Tail calls are not enabled in Weft's runtime (wazero has them as
// an experiment); the rewrite handles them anyway.
func TestFlagStopsAnIndirectTailCallLoop(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm not installed")
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "tail.wat"), filepath.Join(dir, "tail.wasm")
	if err := os.WriteFile(src, []byte(`(module
  (memory 1)
  (type $t (func (param i64) (result i64)))
  (table 1 funcref)
  (elem (i32.const 0) $spin)
  (func $spin (type $t)
    (if (i64.eqz (local.get 0)) (then (return (i64.const 7))))
    (return_call_indirect (type $t) (i64.sub (local.get 0) (i64.const 1)) (i32.const 0)))
  (export "spin" (func $spin)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(wat2wasm, "--enable-tail-call", src, "-o", bin).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v: %s", err, out)
	}
	mod, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(mod)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false).
		WithCoreFeatures(api.CoreFeaturesV2|experimental.CoreFeaturesTailCall))
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("ok"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := m.ExportedFunction("spin").Call(ctx, 3*interrupt.YieldEvery); err != nil || res[0] != 7 {
		t.Fatalf("spin(3×YieldEvery) = %v, %v; want 7", res, err)
	}
	stopsForEver(t, r, compiled, "spin", "spin", "", 1<<62)
}

// Where the checks go on small modules: before every indirect call that
// can recurse, and before no other; none in a function that enters a loop
// first; a call whose type no tabled function has reaches none; an
// exported function counts as tabled when the outside can fill a table.
func TestPlacementOfIndirectCalls(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, wat       string
		sites, checked  int
		loopFirst, take int
	}{
		{"indirect", indirectWAT, 6, 6, 0, 3},
		{"other type", `(module (memory 1)
  (table 1 funcref) (elem (i32.const 0) $a)
  (func $a (param i32) (result i32) (drop (call $b (i64.const 1))) (local.get 0))
  (func $b (param i64) (result i64)
    (drop (call_indirect (param i32) (result i32) (i32.const 1) (i32.const 0)))
    (call_indirect (param i64) (result i64) (local.get 0) (i32.const 0))))`, 2, 1, 0, 1},
		{"loop first", `(module (memory 1)
  (table 1 funcref) (elem (i32.const 0) $a)
  (func $a (param i32) (result i32)
    (local $x i32) (local.set $x (local.get 0))
    (block (loop (drop (call_indirect (param i32) (result i32) (local.get $x) (i32.const 0)))))
    (local.get 0)))`, 1, 0, 1, 1},
		{"exported table", `(module (memory 1)
  (table (export "t") 1 funcref)
  (func $e (export "e") (param i32) (result i32)
    (call_indirect (param i32) (result i32) (local.get 0) (i32.const 0))))`, 1, 1, 0, 1},
		{"exported funcref global", `(module (memory 1)
  (global $g (export "g") (mut funcref) (ref.null func))
  (table $t 1 funcref)
  (func $e (export "e") (param i32) (result i32)
    (table.set $t (i32.const 0) (global.get $g))
    (call_indirect (param i32) (result i32) (local.get 0) (i32.const 0))))`, 1, 1, 0, 1},
		{"own table", `(module (memory 1)
  (table 1 funcref)
  (func $e (export "e") (param i32) (result i32)
    (call_indirect (param i32) (result i32) (local.get 0) (i32.const 0))))`, 1, 0, 0, 0},
	} {
		src := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".wat")
		if err := os.WriteFile(src, []byte(c.wat), 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := interrupt.Placement(guestbuild.WAT(t, src))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if st.IndirectSites != c.sites || st.CheckedSites != c.checked || st.LoopFirst != c.loopFirst || st.TakenFunctions != c.take || st.EntryChecks != 0 {
			t.Errorf("%s: %+v; want %d sites, %d checked, %d loop-first, %d taken, no entry checks",
				c.name, st, c.sites, c.checked, c.loopFirst, c.take)
		}
	}
}

// A type section may encode a count in more bytes than it needs (LEB128
// allows padding, wazero accepts it): two types written differently are
// still one signature, and call_indirect matches them. A guest recursing
// through call_indirect of a padded copy of its own type is checked and
// stopped like one using the same type entry. Before, signatures were
// told apart by their bytes: the call site got no check and a GC waited
// on the guest for ever.
func TestIndirectCallThroughAPaddedTypeIsChecked(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "padded.wat")
	if err := os.WriteFile(src, []byte(`(module
  (memory 1)
  (type $t (func (param i64) (result i64)))
  (type $same (func (param i64) (result i64)))
  (table 1 funcref)
  (elem (i32.const 0) $fib)
  (func $fib (type $t)
    (if (result i64) (i64.lt_u (local.get 0) (i64.const 2))
      (then (local.get 0))
      (else (i64.add
        (call_indirect (type $same) (i64.sub (local.get 0) (i64.const 1)) (i32.const 0))
        (call_indirect (type $same) (i64.sub (local.get 0) (i64.const 2)) (i32.const 0))))))
  (export "fib" (func $fib)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := guestbuild.WAT(t, src)
	// The type section: 2 types, each 60 01 7e 01 7e; the second's
	// parameter count is rewritten as 81 00 (1, padded to two bytes).
	plain := []byte{0x01, 0x0b, 0x02, 0x60, 0x01, 0x7e, 0x01, 0x7e, 0x60, 0x01, 0x7e, 0x01, 0x7e}
	i := bytes.Index(mod, plain)
	if i < 0 {
		t.Fatalf("type section not found in % x", mod)
	}
	padded := append([]byte(nil), mod[:i]...)
	padded = append(padded, 0x01, 0x0c, 0x02, 0x60, 0x01, 0x7e, 0x01, 0x7e, 0x60, 0x81, 0x00, 0x7e, 0x01, 0x7e)
	padded = append(padded, mod[i+len(plain):]...)

	st, err := interrupt.Placement(padded)
	if err != nil {
		t.Fatal(err)
	}
	if st.IndirectSites != 2 || st.CheckedSites != 2 {
		t.Fatalf("%+v; want both indirect call sites checked", st)
	}
	code, err := interrupt.Instrument(padded)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(false))
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("ok"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := m.ExportedFunction("fib").Call(ctx, 20); err != nil || res[0] != 6765 {
		t.Fatalf("fib(20) = %v, %v; want 6765 (wazero takes the padded type as the same)", res, err)
	}
	stopsForEver(t, r, compiled, "fib", "fib", "", 90)
}

// The rewrite adds globals and a function past the module's own, so an
// index just past them names them in the rewritten module: a module that
// writes such a global (the flag, the countdown, the stage global, which
// the watchdog reads to give each callback of a combined entry its own
// deadline) or calls or takes such a function (weft_dispatch) is invalid
// as written, and Instrument refuses it instead of making it valid.
func TestRefusesIndicesPastTheModule(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "own.wat")
	if err := os.WriteFile(src, []byte(`(module
  (memory 1)
  (global $g (mut i32) (i32.const 0))
  (table 1 funcref)
  (func $f (export "f")
    (global.set $g (i32.const 7))
    (call $f)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := guestbuild.WAT(t, src)
	if _, err := interrupt.Instrument(mod); err != nil {
		t.Fatalf("the module as written: %v", err)
	}
	// global.set 0 (24 00) and call 0 (10 00) in $f's body.
	body := []byte{0x41, 0x07, 0x24, 0x00, 0x10, 0x00, 0x0b}
	i := bytes.Index(mod, body)
	if i < 0 {
		t.Fatalf("body not found in % x", mod)
	}
	for _, c := range []struct {
		name string
		at   int
		idx  byte
	}{
		{"global.set of the flag", 3, 1},
		{"global.set of the stage", 3, 3},
		{"global.set of the stop flag", 3, 4},
		{"call of weft_dispatch", 5, 1},
	} {
		bad := append([]byte(nil), mod...)
		bad[i+c.at] = c.idx
		if _, err := interrupt.Instrument(bad); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("%s: Instrument = %v; want an out-of-range index refused", c.name, err)
		}
	}
}
