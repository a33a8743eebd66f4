package wasm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tetratelabs/wazero/api"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// streamCounts runs fn (one stream) on p's only VM and returns the
// guest entries it made (calls into the guest: callSeq moves by two per
// call), the callbacks it counted in calls_total, and the sequence guest's
// trace of callbacks (testdata/sequence.wat), cleared before.
func streamCounts(t *testing.T, p *Plugin, fn func()) (entries, calls uint64, trace uint32) {
	t.Helper()
	v := p.slots[0].vm.Load()
	if v == nil {
		t.Fatal("no vm")
	}
	tr, _ := v.mod.ExportedGlobal("trace").(api.MutableGlobal)
	if tr != nil {
		tr.Set(0) // the VM is idle: no stream runs
	}
	seq, before := v.callSeq.Load(), p.events.acct.calls.Load()
	fn()
	if tr != nil {
		trace = uint32(tr.Get())
	}
	return (v.callSeq.Load() - seq) / 2, p.events.acct.calls.Load() - before, trace
}

// A stream's first two callbacks (context create, request headers) are one
// entry into the guest and its last three (log, done, delete) another, in
// the order and with the results of separate calls; calls_total still
// counts every callback. When on_done answers false, on_delete is still
// made at once (as Envoy does for a stream's context; proxy_done is a
// no-op), in an entry of its own. A filter that did not see the request
// gets its context created on its own before the end.
func TestCombinedEntriesPerStream(t *testing.T) {
	rt := newRuntime(t)
	for _, c := range []struct {
		mode           string
		entries, calls uint64
		trace          uint32
	}{
		{"-", 3, 6, 123456}, // create+request headers, response headers, log+done+delete
		{"n", 4, 6, 123456}, // on_done false: delete on its own
	} {
		p := load(t, rt, PluginSpec{Name: "seq-" + c.mode, Module: wat(t, "sequence"), VMConfig: []byte(c.mode)}, Env{})
		for i := range 2 {
			var o outcome
			s := newStream("/")
			entries, calls, trace := streamCounts(t, p, func() { o = runStream(p, s) })
			if entries != c.entries || calls != c.calls || trace != c.trace {
				t.Errorf("mode %s stream %d: %d entries, %d callbacks counted, trace %d; want %d, %d, %d",
					c.mode, i, entries, calls, trace, c.entries, c.calls, c.trace)
			}
			if !o.upstream || o.req != filter.Continue || o.resp != filter.Continue {
				t.Errorf("mode %s stream %d: %+v", c.mode, i, o)
			}
		}
		// The filter did not see the request (an earlier filter answered):
		// only log and done, as the chain's Finish makes them.
		entries, calls, trace := streamCounts(t, p, func() {
			s := newStream("/")
			f := p.NewStreamFilter(s)
			f.OnLog(s)
			f.OnDone(s)
		})
		want := uint64(2)
		if c.mode == "n" {
			want = 3
		}
		if entries != want || calls != 4 || trace != 1456 {
			t.Errorf("mode %s, a stream with log and done only: %d entries, %d callbacks, trace %d; want %d, 4, 1456",
				c.mode, entries, calls, trace, want)
		}
		if n := p.events.n[eventTrap].Load() + p.events.n[eventTimeout].Load(); n != 0 {
			t.Errorf("mode %s: %d traps or timeouts", c.mode, n)
		}
	}

	// The public Go SDK's no-op: seven callbacks, four entries (the
	// response has a body).
	p := load(t, rt, PluginSpec{Name: "gosdk", Module: guestbuild.GoSDK(t, "noop")}, Env{})
	for i := range 2 {
		s := newStream("/")
		var o outcome
		entries, calls, _ := streamCounts(t, p, func() { o = runStream(p, s) })
		if entries != 4 || calls != 7 || !o.upstream || o.resp != filter.Continue {
			t.Errorf("public SDK stream %d: %d entries, %d callbacks, %+v; want 4, 7, through", i, entries, calls, o)
		}
	}
}

// A trap in any callback of a combined entry is reported as that
// callback's (the log line names it), counted, fails the stream by the
// plugin's policy where the response is not final yet, and the VM is
// replaced; the callbacks after it in the entry do not run. A callback
// stuck in a loop inside a combined entry is stopped by the deadline.
func TestCombinedEntryTraps(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	for _, c := range []struct {
		mode     string
		callback string // named in the error
		calls    uint64
		trace    uint32
		timeout  bool
	}{
		{"x", "proxy_on_context_create", 1, 1, false},
		{"l", "proxy_on_log", 4, 1234, false},
		{"d", "proxy_on_done", 5, 12345, false},
		{"D", "proxy_on_delete", 6, 123456, false},
		{"S", "proxy_on_done", 5, 12345, true},
	} {
		t.Run(c.mode, func(t *testing.T) {
			logs.TakeAll()
			p := load(t, rt, PluginSpec{Name: "seq-" + c.mode, Module: wat(t, "sequence"), VMConfig: []byte(c.mode)}, Env{})
			old := p.slots[0].vm.Load()
			s := newStream("/")
			var o outcome
			before := p.events.acct.calls.Load()
			_, _, trace := streamCounts(t, p, func() { o = runStream(p, s) })
			if trace != c.trace {
				t.Errorf("trace %d; want %d", trace, c.trace)
			}
			if c.mode == "x" {
				// Fail closed (the default) before the upstream.
				if o.upstream || o.req != filter.LocalReply || s.Response.StatusCode() != failStatus {
					t.Errorf("a trap in the create: %+v, status %d; want a %d before the upstream", o, s.Response.StatusCode(), failStatus)
				}
			} else if !o.upstream || s.Response.StatusCode() != 200 {
				t.Errorf("a trap after the response changed it: %+v, status %d", o, s.Response.StatusCode())
			}
			checkCallbackFailed(t, p, logs, old, before, c.callback, c.timeout, c.calls)
		})
	}
}

// A Weft-SDK guest declares its callbacks in the create
// (weft.stream_callbacks): one that wants the request headers gets them in
// the create's entry, so a request-headers filter costs two entries (create
// and request headers; delete), and one that does not want them ends the
// entry after the create. Before, a declaration (the SDK makes one in the
// first stream of a root on a VM, the later ones inherit it) ended the
// entry whatever it said, and the request headers took one more.
func TestCombinedEntriesWeftSDK(t *testing.T) {
	rt := newRuntime(t)
	module := guestbuild.WeftSDK(t, "callbacks")
	for _, c := range []struct {
		kind           string
		entries, calls uint64
		header         string
	}{
		{"headers", 2, 3, "seen"}, // create+request headers, delete
		{"log", 2, 4, "seen"},     // create+request headers, log+delete
		{"noop", 2, 2, ""},        // create, delete
	} {
		p := load(t, rt, PluginSpec{Name: c.kind, Module: module, PoolSize: 1, PluginConfig: []byte(c.kind)}, Env{})
		for i := range 2 { // the first stream declares; the others inherit
			s := newStream("/")
			var o outcome
			entries, calls, _ := streamCounts(t, p, func() { o = runStream(p, s) })
			if entries != c.entries || calls != c.calls || !o.upstream || o.req != filter.Continue {
				t.Errorf("%s stream %d: %d entries, %d callbacks, %+v; want %d, %d, through",
					c.kind, i, entries, calls, o, c.entries, c.calls)
			}
			if got := string(s.Request.Header.Peek("x-weftsdk")); got != c.header {
				t.Errorf("%s stream %d: x-weftsdk %q, want %q", c.kind, i, got, c.header)
			}
		}
	}
}

// A module whose create and request headers are combined but whose end is
// not (its proxy_on_log takes an i64: weft_dispatch cannot make it) still
// creates a stream's context before its proxy_on_log when the filter did
// not see the request. Before, on_log ran first, on a context the guest
// had not been told of, and the create came after it.
func TestLazyCreateBeforeASeparateLog(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "sequence.wat"))
	if err != nil {
		t.Fatal(err)
	}
	old := `(func (export "proxy_on_log") (param i32)`
	if !bytes.Contains(src, []byte(old)) {
		t.Fatal("sequence.wat: proxy_on_log not found")
	}
	path := filepath.Join(t.TempDir(), "sequence_log64.wat")
	if err := os.WriteFile(path, bytes.Replace(src, []byte(old), []byte(`(func (export "proxy_on_log") (param i64)`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Name: "log64", Module: guestbuild.WAT(t, path), VMConfig: []byte("-")}, Env{})
	if v := p.slots[0].vm.Load(); !v.startCombined || v.endCombined {
		t.Fatalf("startCombined %v, endCombined %v; want true, false", v.startCombined, v.endCombined)
	}
	_, calls, trace := streamCounts(t, p, func() {
		s := newStream("/")
		f := p.NewStreamFilter(s)
		f.OnLog(s)
		f.OnDone(s)
	})
	if trace != 1456 || calls != 4 {
		t.Errorf("a stream with log and done only: trace %d, %d callbacks; want 1456 (create, log, done, delete), 4", trace, calls)
	}
	// A whole stream: create with the request headers, then each alone.
	s := newStream("/")
	var o outcome
	_, _, trace = streamCounts(t, p, func() { o = runStream(p, s) })
	if trace != 123456 || !o.upstream {
		t.Errorf("a stream: trace %d, %+v; want 123456, through", trace, o)
	}
}

// sequenceBody is testdata/sequence.wat with a response body callback
// (code 7 in the trace) and more misbehaviours, by the VM configuration's
// first byte:
//
//	h trap in response headers   b trap in response body
//	H endless loop in headers    B endless loop in response body
//	g response headers calls the host (proxy_get_buffer_bytes)
func sequenceBody(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "sequence.wat"))
	if err != nil {
		t.Fatal(err)
	}
	old := `  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $note (i32.const 3))
    (i32.const 0))`
	if !bytes.Contains(src, []byte(old)) {
		t.Fatal("sequence.wat: proxy_on_response_headers not found")
	}
	src = bytes.Replace(src, []byte(old), []byte(`  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $note (i32.const 3))
    (if (i32.eq (global.get $mode) (i32.const 104)) (then unreachable))       ;; 'h'
    (if (i32.eq (global.get $mode) (i32.const 72))                            ;; 'H'
      (then (loop $forever (br $forever))))
    (if (i32.eq (global.get $mode) (i32.const 103))                           ;; 'g'
      (then (drop (call $getbuf (i32.const 6) (i32.const 0) (i32.const 1) (i32.const 2048) (i32.const 2052)))))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (call $note (i32.const 7))
    (if (i32.eq (global.get $mode) (i32.const 98)) (then unreachable))        ;; 'b'
    (if (i32.eq (global.get $mode) (i32.const 66))                            ;; 'B'
      (then (loop $forever (br $forever))))
    (i32.const 0))`), 1)
	path := filepath.Join(t.TempDir(), "sequence_body.wat")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return guestbuild.WAT(t, path)
}

// runChain runs one stream through a filter chain of ps's filters, as the
// proxy does: the request callbacks, a 200 answer with a body from the
// upstream (when the request went through), the response callbacks, log
// and done.
func runChain(s *filter.Stream, ps ...*Plugin) (o outcome) {
	var c filter.Chain
	for _, p := range ps {
		c.Add(p, s)
	}
	o.req = c.DecodeFrom(s, 0)
	if o.req == filter.Continue {
		o.upstream = true
		s.Response.SetStatusCode(200)
		s.Response.Header.Set("Content-Type", "text/plain")
		s.Response.SetBodyString("upstream")
	}
	o.resp = c.Encode(s)
	c.Finish(s)
	return o
}

// A response with its whole body, to a chain whose only filter is a Wasm
// filter, is one entry for both response callbacks (headers, then body):
// a stream is three entries. A headers callback that calls the host gets
// its body callback in an entry of its own, as do the filters of a chain
// of two (each filter's headers come before any filter's body). The
// public Go SDK's no-op: three entries for its seven callbacks.
func TestCombinedResponseEntries(t *testing.T) {
	rt := newRuntime(t)
	module := sequenceBody(t)
	for _, c := range []struct {
		mode           string
		entries, calls uint64
	}{
		{"-", 3, 7}, // create+request headers, response headers+body, log+done+delete
		{"g", 4, 7}, // the headers called the host: the body on its own
	} {
		p := load(t, rt, PluginSpec{Name: "seqbody-" + c.mode, Module: module, VMConfig: []byte(c.mode)}, Env{})
		for i := range 2 {
			s := newStream("/")
			var o outcome
			entries, calls, trace := streamCounts(t, p, func() { o = runChain(s, p) })
			if entries != c.entries || calls != c.calls || trace != 1237456 {
				t.Errorf("mode %s stream %d: %d entries, %d callbacks, trace %d; want %d, %d, 1237456",
					c.mode, i, entries, calls, trace, c.entries, c.calls)
			}
			if !o.upstream || o.resp != filter.Continue || s.Response.StatusCode() != 200 || string(s.Response.Body()) != "upstream" {
				t.Errorf("mode %s stream %d: %+v, status %d, body %q", c.mode, i, o, s.Response.StatusCode(), s.Response.Body())
			}
		}
		if n := p.events.n[eventTrap].Load() + p.events.n[eventTimeout].Load(); n != 0 {
			t.Errorf("mode %s: %d traps or timeouts", c.mode, n)
		}
		if v := p.slots[0].vm.Load(); v.stop.Get() != 0 {
			t.Errorf("mode %s: the stop global left at %d", c.mode, v.stop.Get())
		}
	}

	// Two filters: every filter's headers, then every filter's body, so
	// neither combines them (4 entries each).
	p1 := load(t, rt, PluginSpec{Name: "seqbody-1", Module: module, VMConfig: []byte("-")}, Env{})
	p2 := load(t, rt, PluginSpec{Name: "seqbody-2", Module: module, VMConfig: []byte("-")}, Env{})
	s := newStream("/")
	var e2, c2 uint64
	var t2 uint32
	e1, c1, t1 := streamCounts(t, p1, func() {
		e2, c2, t2 = streamCounts(t, p2, func() { runChain(s, p1, p2) })
	})
	if e1 != 4 || e2 != 4 || c1 != 7 || c2 != 7 || t1 != 1237456 || t2 != 1237456 {
		t.Errorf("two filters: entries %d, %d; callbacks %d, %d; traces %d, %d; want 4, 4; 7, 7; 1237456 each",
			e1, e2, c1, c2, t1, t2)
	}

	// The public Go SDK's no-op (its response body callback is made: the
	// stream has a body).
	p := load(t, rt, PluginSpec{Name: "gosdk", Module: guestbuild.GoSDK(t, "noop")}, Env{})
	for i := range 2 {
		s := newStream("/")
		var o outcome
		entries, calls, _ := streamCounts(t, p, func() { o = runChain(s, p) })
		if entries != 3 || calls != 7 || !o.upstream || o.resp != filter.Continue {
			t.Errorf("public SDK stream %d: %d entries, %d callbacks, %+v; want 3, 7, through", i, entries, calls, o)
		}
	}
}

// A trap or a loop in either callback of a response headers+body entry
// is that callback's: named in the log, counted, the stream failed by the
// plugin's policy (a 503 when closed, the upstream's answer when open),
// the VM replaced, and the body callback not made after a failed headers
// callback.
func TestCombinedResponseTraps(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	module := sequenceBody(t)
	for _, c := range []struct {
		mode     string
		open     bool
		callback string // named in the error
		calls    uint64
		trace    uint32
		timeout  bool
	}{
		{"h", false, "proxy_on_response_headers", 3, 123, false},
		{"b", false, "proxy_on_response_body", 4, 1237, false},
		{"H", false, "proxy_on_response_headers", 3, 123, true},
		{"B", false, "proxy_on_response_body", 4, 1237, true},
		{"h", true, "proxy_on_response_headers", 3, 123, false},
		{"B", true, "proxy_on_response_body", 4, 1237, true},
	} {
		name := c.mode
		if c.open {
			name += "-open"
		}
		t.Run(name, func(t *testing.T) {
			logs.TakeAll()
			p := load(t, rt, PluginSpec{Name: "seqbody-" + name, Module: module, VMConfig: []byte(c.mode), FailOpen: c.open}, Env{})
			old := p.slots[0].vm.Load()
			s := newStream("/")
			var o outcome
			before := p.events.acct.calls.Load()
			entries, _, trace := streamCounts(t, p, func() { o = runChain(s, p) })
			if trace != c.trace || entries != 2 {
				t.Errorf("trace %d, %d entries; want %d, 2", trace, entries, c.trace)
			}
			switch {
			case c.open:
				if o.resp != filter.Continue || s.Response.StatusCode() != 200 || string(s.Response.Body()) != "upstream" {
					t.Errorf("fail open: %+v, status %d, body %q; want the upstream's answer", o, s.Response.StatusCode(), s.Response.Body())
				}
			case o.resp != filter.LocalReply || s.Response.StatusCode() != failStatus:
				t.Errorf("fail closed: %+v, status %d; want a %d", o, s.Response.StatusCode(), failStatus)
			}
			checkCallbackFailed(t, p, logs, old, before, c.callback, c.timeout, c.calls)
		})
	}
}

// checkCallbackFailed checks what a failed callback leaves: its trap or
// timeout counted once, the first error logged naming the callback, the VM
// (old) replaced and the replacement counted, and the callbacks counted
// since before: the stream's (calls, up to the one that failed) and the
// new VM's start (root context create and on_vm_start), counted before the
// replacement is.
func checkCallbackFailed(t *testing.T, p *Plugin, logs *observer.ObservedLogs, old *vm, before uint64, callback string, timeout bool, calls uint64) {
	t.Helper()
	ev := eventTrap
	if timeout {
		ev = eventTimeout
	}
	if n := p.events.n[ev].Load(); n != 1 {
		t.Errorf("%s counted %d times, want 1", eventNames[ev], n)
	}
	var msgs []string
	for _, e := range logs.All() {
		if err, _ := e.ContextMap()["error"].(string); err != "" {
			msgs = append(msgs, err)
		}
	}
	if len(msgs) == 0 || !strings.HasPrefix(msgs[0], callback+": ") {
		t.Errorf("logged errors %q; want the first to begin with %q", msgs, callback+": ")
	}
	if !waitFor(func() bool { v := p.slots[0].vm.Load(); return v != nil && v != old }) {
		t.Fatal("vm not replaced")
	}
	if !waitFor(func() bool { return p.events.n[eventVMReplaced].Load() != 0 }) {
		t.Fatal("replacement not counted")
	}
	if got := p.events.acct.calls.Load() - before; got != calls+2 {
		t.Errorf("%d callbacks counted, want %d (the stream's) + 2 (the new VM's start)", got, calls)
	}
}
