package wasm

import (
	"context"
	"encoding/binary"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// TestStreamCallbacksWeftSDK: Weft's SDK declares the callbacks a stream's
// filter implements (weft.stream_callbacks) and the host enters the guest
// for those only, with the filter's behaviour unchanged: a stream of the
// "headers" filter costs three calls (create, request headers, delete)
// instead of seven, a filter with no callback two. Plugins sharing the VM
// keep their own declarations; a module that declares nothing (the public
// Proxy-Wasm Go SDK) gets every callback.
func TestStreamCallbacksWeftSDK(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	module := guestbuild.WeftSDK(t, "callbacks")
	plugins := map[string]*Plugin{}
	for _, kind := range []string{"headers", "log", "noop", "nil"} {
		plugins[kind] = load(t, rt, PluginSpec{Name: kind, Module: module, PoolSize: 1, ShareVMs: true, PluginConfig: []byte(kind)}, Env{})
	}
	if plugins["headers"].group != plugins["nil"].group {
		t.Fatal("the plugins do not share their VM")
	}
	for _, c := range []struct {
		kind  string
		bits  uint16
		calls uint64 // guest calls per stream
	}{
		{"headers", callbackRequestHeaders, 3},
		{"log", callbackRequestHeaders | callbackLog, 4},
		{"noop", 0, 2},
		{"nil", 0, 2},
	} {
		p := plugins[c.kind]
		for i := range 3 { // the first stream declares; the others inherit
			s := newStream("/")
			before := p.events.acct.calls.Load()
			f := p.NewStreamFilter(s)
			req := f.OnRequestHeaders(s, true) // the context is created with its first callback
			if got := f.(*streamFilter).callbacks; got != c.bits {
				t.Errorf("%s stream %d: callbacks %08b, want %08b", c.kind, i, got, c.bits)
			}
			s.Response.SetStatusCode(200)
			resp := f.OnResponseHeaders(s, true)
			f.OnLog(s)
			f.OnDone(s)
			if req != filter.Continue || resp != filter.Continue {
				t.Errorf("%s stream %d: request %v, response %v, want Continue", c.kind, i, req, resp)
			}
			if n := p.events.acct.calls.Load() - before; n != c.calls {
				t.Errorf("%s stream %d: %d calls into the guest, want %d", c.kind, i, n, c.calls)
			}
			want := ""
			if c.kind == "headers" || c.kind == "log" {
				want = "seen"
			}
			if got := string(s.Request.Header.Peek("x-weftsdk")); got != want {
				t.Errorf("%s stream %d: x-weftsdk %q, want %q", c.kind, i, got, want)
			}
		}
	}
	if n := logs.FilterMessage("wasm log log: weftsdk on_log").Len(); n != 3 {
		t.Errorf("on_log of the log filter ran %d times, want 3", n)
	}

	// The public Go SDK declares nothing: every callback runs.
	p := load(t, rt, PluginSpec{Module: guestbuild.GoSDK(t, "noop"), PoolSize: 1}, Env{})
	s := newStream("/")
	f := p.NewStreamFilter(s)
	if got := f.(*streamFilter).callbacks; got != callbacksAll {
		t.Errorf("public SDK stream: callbacks %08b, want all", got)
	}
	f.OnDone(s)
}

// TestStreamCallbacksOnlyWhileCreating: weft.stream_callbacks belongs to
// proxy_on_context_create; in any other callback, or with malformed
// arguments, it answers BadArgument and changes nothing.
func TestStreamCallbacksOnlyWhileCreating(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	h := newHostEnv(t, p, newStream("/")) // h.call runs as the stream, holding the VM's lock
	arg := binary.LittleEndian.AppendUint32(nil, callbackLog)
	if st, _ := h.callForeign(foreignStreamCallbacks, arg); st != statusBadArgument {
		t.Errorf("outside context create: status %d, want BadArgument", st)
	}
	h.v.creating = true // no other goroutine uses the VM here
	defer func() { h.v.creating = false }()
	if st, _ := h.callForeign(foreignStreamCallbacks, arg[:3]); st != statusBadArgument {
		t.Errorf("3 bytes of arguments: status %d, want BadArgument", st)
	}
	if h.f.callbacks != callbacksAll {
		t.Errorf("callbacks %08b after refused calls, want all", h.f.callbacks)
	}
	if st, _ := h.callForeign(foreignStreamCallbacks, arg); st != statusOK {
		t.Fatalf("while creating: status %d, want OK", st)
	}
	if h.f.callbacks != callbackLog {
		t.Errorf("callbacks %08b, want %08b", h.f.callbacks, callbackLog)
	}
	if got := h.v.streamCallbacks(p); got != callbackLog {
		t.Errorf("the root's next streams start with %08b, want %08b", got, callbackLog)
	}
}

// TestStreamCallbacksNoContext: a Weft-SDK filter that is a
// sdk.StatelessFilter declares callbackNoContext on its first stream; the
// root's later streams are neither created nor deleted in the guest (one
// call each: request headers) and behave the same, local replies included,
// overlapping streams too. A second such plugin sharing the VM keeps a
// context per stream (the SDK gives the mode to one root per VM), and the
// stream that declared it is deleted as it was created.
func TestStreamCallbacksNoContext(t *testing.T) {
	rt := newRuntime(t)
	module := guestbuild.WeftSDK(t, "callbacks")
	first := load(t, rt, PluginSpec{Name: "first", Module: module, PoolSize: 1, ShareVMs: true, PluginConfig: []byte("stateless")}, Env{})
	second := load(t, rt, PluginSpec{Name: "second", Module: module, PoolSize: 1, ShareVMs: true, PluginConfig: []byte("stateless")}, Env{})
	if first.group != second.group {
		t.Fatal("the plugins do not share their VM")
	}
	run := func(p *Plugin, deny bool) (filter.Status, *filter.Stream, uint64, uint16) {
		t.Helper()
		s := newStream("/")
		if deny {
			s.Request.Header.Set("x-deny", "1")
		}
		before := p.events.acct.calls.Load()
		f := p.NewStreamFilter(s)
		st := f.OnRequestHeaders(s, true) // the context is created with its first callback
		bits := f.(*streamFilter).callbacks
		f.OnLog(s)
		f.OnDone(s)
		return st, s, p.events.acct.calls.Load() - before, bits
	}
	for i, c := range []struct {
		p     *Plugin
		deny  bool
		calls uint64
		bits  uint16
	}{
		{first, false, 3, callbackRequestHeaders},                     // declares
		{first, false, 1, callbackRequestHeaders | callbackNoContext}, // no context
		{first, true, 1, callbackRequestHeaders | callbackNoContext},  // a local reply
		{first, false, 1, callbackRequestHeaders | callbackNoContext},
		{second, false, 3, callbackRequestHeaders}, // another root of the VM
		{second, false, 3, callbackRequestHeaders},
	} {
		st, s, calls, bits := run(c.p, c.deny)
		if calls != c.calls || bits != c.bits {
			t.Errorf("stream %d: %d guest calls, callbacks %09b; want %d, %09b", i, calls, bits, c.calls, c.bits)
		}
		switch {
		case c.deny:
			if st != filter.LocalReply || s.Response.StatusCode() != 403 {
				t.Errorf("stream %d: %v, status %d; want a 403 local reply", i, st, s.Response.StatusCode())
			}
		case st != filter.Continue || string(s.Request.Header.Peek("x-weftsdk")) != "seen":
			t.Errorf("stream %d: %v, x-weftsdk %q", i, st, s.Request.Header.Peek("x-weftsdk"))
		}
	}
	// Overlapping streams of the stateless root.
	s1, s2 := newStream("/"), newStream("/")
	f1, f2 := first.NewStreamFilter(s1), first.NewStreamFilter(s2)
	s2.Request.Header.Set("x-deny", "1")
	if a, b := f1.OnRequestHeaders(s1, true), f2.OnRequestHeaders(s2, true); a != filter.Continue || b != filter.LocalReply {
		t.Errorf("overlapping: %v, %v", a, b)
	}
	f2.OnDone(s2)
	f1.OnDone(s1)
	if got := string(s1.Request.Header.Peek("x-weftsdk")); got != "seen" {
		t.Errorf("overlapping: x-weftsdk %q", got)
	}
}
