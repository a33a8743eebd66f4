package interrupt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

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
	if _, err := d.Call(ctx, interrupt.SelEnd+1, 0, 0, 0); err == nil {
		t.Error("a selector past the list did not trap")
	}
	if !interrupt.Dispatchable([]byte{0x7f, 0x7f}, nil) || interrupt.Dispatchable([]byte{0x7e}, nil) ||
		interrupt.Dispatchable([]byte{0x7f, 0x7f, 0x7f, 0x7f}, nil) || interrupt.Dispatchable(nil, []byte{0x7f, 0x7f}) {
		t.Error("Dispatchable does not follow its rule")
	}
}

// The combined selectors run their callbacks in order with the arguments
// each takes, set the stage global before each, stop after context create
// when the host sets the stop global, stop before on_delete when on_done answers
// false, and leave the stage at the callback that trapped.
func TestDispatchCombinedSelectors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "seq.wat")
	// Each callback appends a code to the host's trace: 1000*callback +
	// its arguments; on_done answers false for context 66; on_log traps
	// for context 99; the host's "stop" import sets the stop global when
	// create's root is 5.
	if err := os.WriteFile(src, []byte(`(module
  (import "env" "trace" (func $trace (param i32)))
  (import "env" "stop" (func $stop (param i32)))
  (memory 1)
  (func (export "proxy_on_context_create") (param i32 i32)
    (call $trace (i32.add (i32.const 1000) (i32.add (i32.mul (local.get 0) (i32.const 10)) (local.get 1))))
    (call $stop (local.get 1)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $trace (i32.add (i32.const 2000) (i32.add (i32.mul (local.get 1) (i32.const 10)) (local.get 2))))
    (i32.const 7))
  (func (export "proxy_on_log") (param i32)
    (if (i32.eq (local.get 0) (i32.const 99)) (then unreachable))
    (call $trace (i32.add (i32.const 3000) (local.get 0))))
  (func (export "proxy_on_done") (param i32) (result i32)
    (call $trace (i32.add (i32.const 4000) (local.get 0)))
    (i32.ne (local.get 0) (i32.const 66)))
  (func (export "proxy_on_delete") (param i32)
    (call $trace (i32.add (i32.const 5000) (local.get 0))))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (local.get 0) (i32.const 98)) (then unreachable))
    (call $trace (i32.add (i32.const 6000) (i32.add (i32.mul (local.get 1) (i32.const 10)) (local.get 2))))
    (if (i32.eq (local.get 0) (i32.const 55)) (then (call $stop (i32.const 5))))
    (i32.mul (i32.eq (local.get 0) (i32.const 77)) (i32.const 1)))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (if (i32.eq (local.get 0) (i32.const 97)) (then unreachable))
    (call $trace (i32.add (i32.const 7000) (i32.add (i32.mul (local.get 1) (i32.const 10)) (local.get 2))))
    (i32.mul (i32.eq (local.get 0) (i32.const 33)) (i32.const 3))))`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, err := interrupt.Instrument(guestbuild.WAT(t, src))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	var trace []uint32
	var mod api.Module
	global := func(name string) api.MutableGlobal {
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			t.Fatalf("no mutable %s global", name)
		}
		return g
	}
	stage := func() api.MutableGlobal { return global(interrupt.StageName) }
	if _, err := r.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithFunc(func(v uint32) { trace = append(trace, v) }).Export("trace").
		NewFunctionBuilder().WithFunc(func(root uint32) {
		if root == 5 {
			global(interrupt.StopName).Set(1)
		}
	}).Export("stop").
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if mod, err = r.Instantiate(ctx, code); err != nil {
		t.Fatal(err)
	}
	d := mod.ExportedFunction(interrupt.DispatchName)
	call := func(sel, a, b, c uint64) (uint64, []uint32, error) {
		trace = nil
		st := []uint64{sel, a, b, c}
		err := d.CallWithStack(ctx, st)
		return st[0], trace, err
	}
	check := func(what string, res uint64, got []uint32, err error, wantRes uint64, want ...uint32) {
		t.Helper()
		if err != nil || res != wantRes || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: result %d, trace %v, err %v; want %d, %v", what, res, got, err, wantRes, want)
		}
	}
	// Create (context 4, root 1), then request headers (3 headers, end of stream).
	res, got, err := call(interrupt.SelCreateRequestHeaders, 4, 1, 3<<1|1)
	check("create+headers", res, got, err, 7, 1041, 2031)
	if s := stage().Get(); s != 1 {
		t.Errorf("stage after create+headers = %d, want 1 (request headers)", s)
	}
	res, got, err = call(interrupt.SelCreateRequestHeaders, 4, 2, 12<<1)
	check("create+headers, not end of stream", res, got, err, 7, 1042, 2120)
	// The host sets the stop global during create: request headers is not called.
	res, got, err = call(interrupt.SelCreateRequestHeaders, 4, 5, 3<<1|1)
	check("create+headers stopped after create", res, got, err, 0, 1045)
	if s, stop := stage().Get(), global(interrupt.StopName).Get(); s != 0 || stop != 0 {
		t.Errorf("after a stop: stage %d, stop %d; want 0 (create), 0 (cleared)", s, stop)
	}
	res, got, err = call(interrupt.SelCreateRequestHeaders, 4, 1, 3<<1|1)
	check("create+headers after a stop", res, got, err, 7, 1041, 2031)
	all := uint64(interrupt.EndLog | interrupt.EndDone | interrupt.EndDelete)
	res, got, err = call(interrupt.SelEnd, 8, all, 0)
	check("log+done+delete", res, got, err, 1, 3008, 4008, 5008)
	if s := stage().Get(); s != 9 {
		t.Errorf("stage after end = %d, want 9 (delete)", s)
	}
	res, got, err = call(interrupt.SelEnd, 8, interrupt.EndDone|interrupt.EndDelete, 0)
	check("done+delete", res, got, err, 1, 4008, 5008)
	res, got, err = call(interrupt.SelEnd, 8, interrupt.EndLog, 0)
	check("log only", res, got, err, 1, 3008)
	// on_done answers false: on_delete is left to the host.
	res, got, err = call(interrupt.SelEnd, 66, all, 0)
	check("done false", res, got, err, 0, 3066, 4066)
	if s := stage().Get(); s != 8 {
		t.Errorf("stage after a false on_done = %d, want 8 (done)", s)
	}
	// A trap in on_log: nothing after it runs, the stage names on_log.
	if _, got, err = call(interrupt.SelEnd, 99, all, 0); err == nil || len(got) != 0 {
		t.Errorf("trap in on_log: trace %v, err %v; want a trap and nothing run", got, err)
	}
	if s := stage().Get(); s != 7 {
		t.Errorf("stage after a trap in on_log = %d, want 7 (log)", s)
	}

	// Response headers (3 headers, end_of_stream false), then the body
	// (64 bytes, end of stream) in one entry, the body's action returned.
	res, got, err = call(interrupt.SelResponseHeadersBody, 8, 3, 64<<1|1)
	check("response headers+body", res, got, err, 0, 6030, 7641)
	if s := stage().Get(); s != 5 {
		t.Errorf("stage after response headers+body = %d, want 5 (response body)", s)
	}
	res, got, err = call(interrupt.SelResponseHeadersBody, 33, 2, 5<<1)
	check("response body answering 3", res, got, err, 3, 6020, 7050)
	// The headers answer Pause: the body is not called, the headers' action is returned.
	res, got, err = call(interrupt.SelResponseHeadersBody, 77, 3, 64<<1|1)
	check("response headers pause", res, got, err, 1, 6030)
	if s := stage().Get(); s != 4 {
		t.Errorf("stage after a pausing response headers = %d, want 4 (response headers)", s)
	}
	// The host sets the stop global during the headers: the body is not
	// called, 0 is returned and the stop global is left for the host.
	res, got, err = call(interrupt.SelResponseHeadersBody, 55, 3, 64<<1|1)
	check("response headers stopped", res, got, err, 0, 6030)
	if s, stop := stage().Get(), global(interrupt.StopName).Get(); s != 4 || stop != 1 {
		t.Errorf("after a stop: stage %d, stop %d; want 4 (response headers), 1 (left to the host)", s, stop)
	}
	global(interrupt.StopName).Set(0)
	// A trap in either: the stage names it, nothing after it runs.
	if _, got, err = call(interrupt.SelResponseHeadersBody, 98, 3, 64<<1|1); err == nil || len(got) != 0 {
		t.Errorf("trap in response headers: trace %v, err %v; want a trap and nothing run", got, err)
	}
	if s := stage().Get(); s != 4 {
		t.Errorf("stage after a trap in response headers = %d, want 4", s)
	}
	if _, got, err = call(interrupt.SelResponseHeadersBody, 97, 3, 64<<1|1); err == nil || fmt.Sprint(got) != "[6030]" {
		t.Errorf("trap in response body: trace %v, err %v; want a trap after the headers", got, err)
	}
	if s := stage().Get(); s != 5 {
		t.Errorf("stage after a trap in response body = %d, want 5", s)
	}
}
