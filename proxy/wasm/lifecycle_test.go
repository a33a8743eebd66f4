package wasm

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

func TestLocalResponse(t *testing.T) {
	rt := newRuntime(t)
	cfg := serializeMap(nil, [][2][]byte{{[]byte("x-reason"), []byte("test")}})
	p := load(t, rt, PluginSpec{Module: wat(t, "local"), PluginConfig: cfg}, Env{})
	s := newStream("/")
	o := runStream(p, s)
	if o.req != filter.LocalReply || o.upstream {
		t.Fatalf("outcome %+v, want a local reply", o)
	}
	if s.Response.StatusCode() != 403 || string(s.Response.Body()) != "denied by wasm" {
		t.Errorf("response %d %q", s.Response.StatusCode(), s.Response.Body())
	}
	if got := string(s.Response.Header.Peek("X-Reason")); got != "test" {
		t.Errorf("x-reason = %q", got)
	}
	// Response filters run on the local reply (Envoy behaviour).
	if got := string(s.Response.Header.Peek("X-Seen")); got != "response" {
		t.Errorf("x-seen = %q", got)
	}
}

func TestPauseResumedFromTick(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "pause")}, Env{})
	s := newStream("/")
	o := runStream(p, s)
	if o.req != filter.Continue || !o.upstream {
		t.Fatalf("outcome %+v", o)
	}
	if got := string(s.Request.Header.Peek("X-Resumed")); got != "tick" {
		t.Errorf("x-resumed = %q", got)
	}

	s = newStream("/", "X-Reply", "1")
	o = runStream(p, s)
	if o.req != filter.LocalReply || o.upstream {
		t.Fatalf("outcome %+v, want the tick's local reply", o)
	}
	if s.Response.StatusCode() != 429 || string(s.Response.Body()) != "slow down" {
		t.Errorf("response %d %q", s.Response.StatusCode(), s.Response.Body())
	}
}

// fastUpstream implements Env.Upstream over a real fasthttp server.
type fastUpstream struct {
	addr string
	hc   *fasthttp.HostClient
	mu   sync.Mutex
	seen []string
}

func (u *fastUpstream) Do(cluster string, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	u.mu.Lock()
	u.seen = append(u.seen, cluster)
	u.mu.Unlock()
	if cluster != "upstream" {
		return &net.AddrError{Err: "unknown cluster", Addr: cluster}
	}
	return u.hc.DoTimeout(req, resp, timeout)
}

func startUpstream(t *testing.T) *fastUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		c.Response.SetStatusCode(201)
		c.Response.SetBodyString("pong:" + string(c.Method()) + ":" + string(c.Path()) + ":" + string(c.PostBody()))
	}}
	go srv.Serve(ln) //nolint:errcheck
	up := &fastUpstream{addr: ln.Addr().String(), hc: &fasthttp.HostClient{Addr: ln.Addr().String()}}
	t.Cleanup(func() {
		up.hc.CloseIdleConnections()
		_ = srv.Shutdown()
		// Shutdown before Serve began leaves Serve to start afterwards and
		// accept for ever: closing the socket ends it either way.
		_ = ln.Close()
	})
	return up
}

func TestHTTPCallResumes(t *testing.T) {
	up := startUpstream(t)
	rt := newRuntime(t)
	hdrs := serializeMap(nil, [][2][]byte{
		{[]byte(":method"), []byte("POST")}, {[]byte(":path"), []byte("/auth")}, {[]byte(":authority"), []byte("auth.local")},
	})
	p := load(t, rt, PluginSpec{Module: wat(t, "httpcall"), PluginConfig: hdrs}, Env{Upstream: up})
	s := newStream("/")
	o := runStream(p, s)
	if o.req != filter.Continue || !o.upstream {
		t.Fatalf("outcome %+v", o)
	}
	if got := string(s.Request.Header.Peek("X-Call-Status")); got != "201" {
		t.Errorf("x-call-status = %q", got)
	}
	if got := string(s.Request.Header.Peek("X-Call-Body")); got != "pong:POST:/auth:ping" {
		t.Errorf("x-call-body = %q", got)
	}
}

func TestHTTPCallMissingPseudoHeaders(t *testing.T) {
	up := startUpstream(t)
	rt := newRuntime(t)
	hdrs := serializeMap(nil, [][2][]byte{{[]byte(":method"), []byte("GET")}})
	p := load(t, rt, PluginSpec{Module: wat(t, "httpcall"), PluginConfig: hdrs}, Env{Upstream: up})
	s := newStream("/")
	o := runStream(p, s)
	if o.req != filter.Continue || !o.upstream {
		t.Fatalf("outcome %+v", o)
	}
	if got := string(s.Request.Header.Peek("X-Call-Error")); got != "dispatch" {
		t.Errorf("x-call-error = %q (a call without :path/:authority must be refused)", got)
	}
}

// trapCase names a callback made to trap and how the stream must end.
type trapCase struct {
	mode byte
	name string
}

func TestTrapInLifecycleFailsLoad(t *testing.T) {
	rt := newRuntime(t)
	for _, c := range []trapCase{{'v', "on_vm_start"}, {'c', "on_configure"}, {'f', "false on_vm_start"}} {
		_, err := rt.Load(context.Background(), PluginSpec{Name: c.name, Module: wat(t, "trap"), VMConfig: []byte{c.mode}, PoolSize: 1}, Env{})
		if err == nil {
			t.Errorf("%s: Load succeeded", c.name)
		}
	}
}

func TestTrapInStreamCallbacks(t *testing.T) {
	rt := newRuntime(t)
	cases := []struct {
		mode byte
		name string
		// whether the failure hits before the upstream (request side)
		request bool
		// whether the stream's response is still the upstream's (on_log
		// and on_done run after the response is final)
		late bool
	}{
		{'x', "context_create", true, false},
		{'h', "request_headers", true, false},
		{'b', "request_body", true, false},
		{'o', "out_of_bounds_load", true, false},
		{'r', "response_headers", false, false},
		{'B', "response_body", false, false},
		{'l', "on_log", false, true},
		{'d', "on_done", false, true},
	}
	for _, failOpen := range []bool{false, true} {
		for _, c := range cases {
			name := c.name + map[bool]string{false: "/fail_closed", true: "/fail_open"}[failOpen]
			t.Run(name, func(t *testing.T) {
				p := load(t, rt, PluginSpec{Name: name, Module: wat(t, "trap"), VMConfig: []byte{c.mode}, FailOpen: failOpen}, Env{})
				s := newStream("/", "X-Boom", "1")
				s.Request.SetBodyString("payload")
				o := runStream(p, s)
				switch {
				case c.late:
					if !o.upstream || s.Response.StatusCode() != 200 {
						t.Errorf("a trap after the response must not change it: %+v %d", o, s.Response.StatusCode())
					}
				case failOpen:
					if !o.upstream || s.Response.StatusCode() != 200 || string(s.Response.Body()) != "upstream" {
						t.Errorf("fail_open: outcome %+v status %d body %q", o, s.Response.StatusCode(), s.Response.Body())
					}
				default:
					if s.Response.StatusCode() != failStatus {
						t.Errorf("fail_closed: status %d, want %d", s.Response.StatusCode(), failStatus)
					}
					if c.request && (o.upstream || o.req != filter.LocalReply) {
						t.Errorf("fail_closed on the request side must stop it: %+v", o)
					}
					if !c.request && o.resp != filter.LocalReply {
						t.Errorf("fail_closed on the response side must reply locally: %+v", o)
					}
				}
				if n := p.events.n[eventTrap].Load(); n == 0 {
					t.Errorf("trap not counted")
				}
				// The VM is replaced; the next stream works on the new one.
				if !waitFor(func() bool { return p.slots[0].vm.Load() != nil }) {
					t.Fatal("vm not replaced")
				}
				s2 := newStream("/")
				o2 := runStream(p, s2)
				if !o2.upstream || string(s2.Request.Header.Peek("X-Ok")) != "yes" || s2.Response.StatusCode() != 200 {
					t.Errorf("next stream: %+v x-ok=%q status %d", o2, s2.Request.Header.Peek("X-Ok"), s2.Response.StatusCode())
				}
				// Counted just after the slot gets its VM: poll.
				if !waitFor(func() bool { return p.events.n[eventVMReplaced].Load() != 0 }) {
					t.Errorf("replacement not counted")
				}
			})
		}
	}
}

func TestInfiniteLoopStoppedByDeadline(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "trap"), VMConfig: []byte{'L'}}, Env{}) // the default deadline
	s := newStream("/", "X-Boom", "1")
	o := runStream(p, s)
	if o.upstream || o.req != filter.LocalReply || s.Response.StatusCode() != failStatus {
		t.Fatalf("outcome %+v status %d: a runaway guest must fail the stream closed", o, s.Response.StatusCode())
	}
	if p.events.n[eventTimeout].Load() != 1 {
		t.Errorf("timeouts = %d", p.events.n[eventTimeout].Load())
	}
	if !waitFor(func() bool { return p.slots[0].vm.Load() != nil }) {
		t.Fatal("vm not replaced")
	}
	s2 := newStream("/")
	if o2 := runStream(p, s2); !o2.upstream || string(s2.Request.Header.Peek("X-Ok")) != "yes" {
		t.Errorf("next stream: %+v", o2)
	}
}

func TestMemoryLimit(t *testing.T) {
	rt := newRuntime(t)
	const limit = 40
	p := load(t, rt, PluginSpec{Module: wat(t, "trap"), VMConfig: []byte{'m'}, MemoryLimitPages: limit}, Env{})
	s := newStream("/", "X-Boom", "1")
	o := runStream(p, s)
	if !o.upstream {
		t.Fatalf("outcome %+v", o)
	}
	if got := string(s.Request.Header.Peek("X-Grow")); got != "refused" {
		t.Errorf("x-grow = %q: memory.grow past the limit must fail", got)
	}
	v := p.slots[0].vm.Load()
	if pages := v.mem.Size() / 65536; pages > limit {
		t.Errorf("memory %d pages > limit %d", pages, limit)
	}
	// A module whose initial memory exceeds the limit is refused.
	if _, err := rt.Load(context.Background(), PluginSpec{Name: "small", Module: wat(t, "trap"), MemoryLimitPages: 1, PoolSize: 1}, Env{}); err == nil {
		t.Errorf("Load with a 1-page limit for a 2-page module succeeded")
	}
}

func TestOutOfBoundsHostCalls(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "oob"), VMConfig: []byte("vm-config")}, Env{Upstream: &fastUpstream{}})
	s := newStream("/")
	o := runStream(p, s)
	if !o.upstream {
		t.Fatalf("outcome %+v", o)
	}
	got := string(s.Request.Header.Peek("X-Oob"))
	if want := strings.Repeat("6", 29); got != want {
		for i := range got {
			if got[i] != '6' {
				t.Errorf("call %d answered status %d, want InvalidMemoryAccess", i, got[i]-'0')
			}
		}
		t.Fatalf("x-oob = %q", got)
	}
	if p.events.n[eventTrap].Load() != 0 {
		t.Errorf("bad pointers must not trap the guest")
	}
}

func TestPoolSpreadsStreamsAndCloseDrains(t *testing.T) {
	rt := newRuntime(t)
	p, err := rt.Load(context.Background(), PluginSpec{Name: "pool", Module: wat(t, "headers"), PoolSize: 3}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	var fs []filter.StreamFilter
	var ss []*filter.Stream
	used := map[*vm]bool{}
	for i := 0; i < 3; i++ {
		s := newStream("/")
		f := p.NewStreamFilter(s)
		used[f.(*streamFilter).v] = true
		fs = append(fs, f)
		ss = append(ss, s)
	}
	if len(used) != 3 {
		t.Errorf("3 concurrent streams used %d VMs, want 3 (least loaded)", len(used))
	}
	p.Close()
	// A stream that still refers to a closed fail_closed plugin is failed
	// by policy, not let through unfiltered.
	late := newStream("/")
	lf := p.NewStreamFilter(late)
	if _, ok := lf.(*streamFilter); ok {
		t.Errorf("a closing plugin started a new stream on a VM")
	}
	if lf == nil || lf.OnRequestHeaders(late, true) != filter.LocalReply || late.Response.StatusCode() != failStatus {
		t.Errorf("a late stream on a closed fail_closed plugin was not failed by policy")
	}
	// In-flight streams still work on the old VMs.
	for i, f := range fs {
		if st := f.OnRequestHeaders(ss[i], true); st != filter.Continue || string(ss[i].Request.Header.Peek("X-Wasm")) != "on" {
			t.Errorf("in-flight stream %d after Close: %v", i, st)
		}
		f.OnLog(ss[i])
		f.OnDone(ss[i])
	}
	if !waitFor(func() bool {
		p.closeMu.Lock()
		defer p.closeMu.Unlock()
		return p.closed
	}) {
		t.Fatal("plugin did not finish closing after its streams ended")
	}
}

func TestSharedStateAcrossReload(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop"), VMID: "shared"}, Env{})
	v := p.slots[0].vm.Load()
	if st := rt.shared.set("shared", []byte("k"), []byte("v1"), 0); st != statusOK {
		t.Fatal(st)
	}
	_, cas, _ := rt.shared.get("shared", []byte("k"), nil)
	if st := rt.shared.set("shared", []byte("k"), []byte("v2"), cas+1); st != statusCasMismatch {
		t.Errorf("stale cas: %d", st)
	}
	if st := rt.shared.set("shared", []byte("k"), []byte("v2"), cas); st != statusOK {
		t.Errorf("fresh cas: %d", st)
	}
	closeAndWait(p)
	_ = v
	p2 := load(t, rt, PluginSpec{Module: wat(t, "noop"), VMID: "shared", PluginConfig: []byte("new")}, Env{})
	val, _, ok := rt.shared.get(p2.spec.VMID, []byte("k"), nil)
	if !ok || string(val) != "v2" {
		t.Errorf("after reload: %q %v", val, ok)
	}
	if p.Key() == p2.Key() {
		t.Errorf("different configs gave equal keys")
	}
}

func TestConcurrentStreams(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers"), PoolSize: 2}, Env{})
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				in := string(rune('a'+g)) + strings.Repeat("x", i%7)
				s := newStream("/", "X-In", in)
				o := runStream(p, s)
				if !o.upstream || string(s.Request.Header.Peek("X-Echo")) != in {
					errs <- in
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("stream with x-in %q was not filtered correctly", e)
	}
	for _, s := range p.slots {
		if s.load.Load() != 0 {
			t.Errorf("slot %d still has %d streams", s.idx, s.load.Load())
		}
	}
}

// TestStreamsRacingCloseNeverPanic: streams starting while Close drains are
// refused or counted, never a WaitGroup misuse; the plugin still closes.
func TestStreamsRacingCloseNeverPanic(t *testing.T) {
	rt := newRuntime(t)
	for round := 0; round < 20; round++ {
		p := load(t, rt, PluginSpec{Name: fmt.Sprintf("race%d", round), Module: wat(t, "noop"), PoolSize: 1}, Env{})
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					s := newStream("/")
					if f := p.NewStreamFilter(s); f != nil {
						f.OnRequestHeaders(s, true)
						f.OnDone(s)
					}
				}
			}()
		}
		p.Close()
		wg.Wait()
		select {
		case <-p.active.drained():
		case <-time.After(5 * time.Second):
			t.Fatal("a closed plugin never drained")
		}
	}
}

// A guest that refuses its configuration says why in its log; the load
// error carries that reason (weft filter run, a rejected config and a NACK
// show it), not only "returned false".
func TestRefusedConfigurationCarriesTheGuestsReason(t *testing.T) {
	rt := newRuntime(t)
	_, err := rt.Load(context.Background(), PluginSpec{Name: "setheader", Module: guestbuild.GoSDK(t, "setheader"),
		PluginConfig: []byte("not a header assignment")}, Env{})
	if err == nil {
		t.Fatal("a refused configuration loaded")
	}
	for _, want := range []string{"proxy_on_configure returned false", `plugin configuration "not a header assignment" is not NAME=VALUE`} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
}

// A VM that breaks again soon after its rebuild is in a crash loop: its
// next rebuild waits, doubling, and each wait is counted. The slot still
// comes back, and streams fail by the policy meanwhile.
func TestCrashLoopBacksOff(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Name: "crashloop", Module: wat(t, "trap"), VMConfig: []byte{'h'}, FailOpen: true}, Env{})
	for i := 1; i <= 3; i++ {
		if !waitFor(func() bool { return p.slots[0].vm.Load() != nil }) {
			t.Fatalf("crash %d: the slot never came back", i)
		}
		before := p.events.n[eventVMReplaced].Load()
		o := runStream(p, newStream("/", "X-Boom", "1"))
		if !o.upstream {
			t.Fatalf("crash %d: fail_open did not let the stream through: %+v", i, o)
		}
		// The first crash is rebuilt at once; each later one in a row waits.
		if got, want := p.events.n[eventCrashBackoff].Load(), uint64(i-1); got != want {
			t.Fatalf("after crash %d: crash_backoff %d, want %d", i, got, want)
		}
		if !waitFor(func() bool { return p.events.n[eventVMReplaced].Load() > before }) {
			t.Fatalf("crash %d: not rebuilt", i)
		}
	}
	for n, want := range map[int]time.Duration{1: 0, 2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 10: 25600 * time.Millisecond, 11: 30 * time.Second, 100: 30 * time.Second} {
		if got := crashBackoff(n); got != want {
			t.Errorf("crashBackoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// A guest that overruns its deadline again on its replacement VM is held
// back: the first runaway is replaced at once, the second's replacement
// waits (here for an hour), and meanwhile streams fail by policy without
// entering a guest. The default pool leaves a core free of the plugin.
func TestRunawayVMHeldBack(t *testing.T) {
	if n := runtime.GOMAXPROCS(0); n > 1 && DefaultPoolSize() >= n {
		t.Errorf("default pool of %d VMs with GOMAXPROCS %d: one plugin's guests could take every core", DefaultPoolSize(), n)
	}
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "trap"), VMConfig: []byte{'L'}}, Env{})
	p.runawayBackoff = time.Hour
	spin := func() {
		t.Helper()
		s := newStream("/", "X-Boom", "1")
		if o := runStream(p, s); o.upstream || s.Response.StatusCode() != failStatus {
			t.Fatalf("runaway stream: %+v status %d", o, s.Response.StatusCode())
		}
	}
	spin()
	if !waitFor(func() bool { return p.slots[0].vm.Load() != nil }) {
		t.Fatal("the first runaway VM was not replaced")
	}
	spin()
	if !waitFor(func() bool { return p.events.n[eventRunawayBackoff].Load() == 1 }) {
		t.Fatalf("runaway_backoff = %d, want 1", p.events.n[eventRunawayBackoff].Load())
	}
	for i := 0; i < 3; i++ {
		s := newStream("/")
		if o := runStream(p, s); o.upstream || s.Response.StatusCode() != failStatus {
			t.Errorf("a stream while the runaway is held back: %+v status %d", o, s.Response.StatusCode())
		}
	}
	if n := p.events.n[eventTimeout].Load(); n != 2 {
		t.Errorf("callback timeouts = %d, want 2 (no guest entered while held back)", n)
	}
	if p.slots[0].vm.Load() != nil {
		t.Error("the held-back slot has a VM")
	}
}

func TestRunawayStrikes(t *testing.T) {
	s := &slot{}
	now := time.Unix(1000, 0)
	want := []time.Duration{0, runawayBackoff, 2 * runawayBackoff, 4 * runawayBackoff}
	for i, w := range want {
		if got := s.strike(now.Add(time.Duration(i)*time.Second), runawayBackoff); got != w {
			t.Errorf("strike %d: hold %v, want %v", i+1, got, w)
		}
	}
	for i := 0; i < 20; i++ {
		s.strike(now.Add(10*time.Second), runawayBackoff)
	}
	if got := s.strike(now.Add(11*time.Second), runawayBackoff); got != maxRunawayBackoff {
		t.Errorf("hold after many strikes %v, want the cap %v", got, maxRunawayBackoff)
	}
	if got := s.strike(now.Add(11*time.Second+strikeMemory+time.Second), runawayBackoff); got != 0 {
		t.Errorf("a runaway long after the last: hold %v, want 0", got)
	}
}

// Streams that find their VM busy wait for it, counted (vm_busy); once
// maxVMWaiters wait, more fail by policy at once (overloaded) instead of
// piling up behind a guest that may spin until its deadline.
func TestBusyVMQueueIsBounded(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	v := p.slots[0].vm.Load()
	v.mu.Lock() // a call in progress
	done := make(chan outcome)
	go func() { done <- runStream(p, newStream("/")) }()
	if !waitFor(func() bool { return v.waiters.Load() == 1 }) {
		v.mu.Unlock()
		t.Fatal("the stream did not wait for the busy VM")
	}
	if p.events.n[eventVMBusy].Load() == 0 {
		t.Error("the wait was not counted")
	}
	v.waiters.Add(maxVMWaiters - 1) // as if the queue were full
	s := newStream("/")
	if o := runStream(p, s); o.upstream || s.Response.StatusCode() != failStatus {
		t.Errorf("a stream beyond the queue bound: %+v status %d, want failed by policy", o, s.Response.StatusCode())
	}
	if p.events.n[eventOverloaded].Load() != 1 {
		t.Errorf("overloaded = %d, want 1", p.events.n[eventOverloaded].Load())
	}
	v.waiters.Add(-(maxVMWaiters - 1))
	v.mu.Unlock()
	if o := <-done; !o.upstream {
		t.Errorf("the waiting stream: %+v", o)
	}
	if p.events.n[eventTrap].Load()+p.events.n[eventTimeout].Load() != 0 || p.slots[0].vm.Load() != v {
		t.Error("an overloaded VM must not be replaced")
	}
}

// A plugin closed while a stream is in flight (a reload replaced it) ends
// its VMs once the stream is done; Runtime.Close waits for that, so no
// guest call or log comes after Close returns (a test's logger panics on
// a log after its test ended).
func TestRuntimeCloseWaitsForClosingPlugins(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rt.Load(context.Background(), PluginSpec{Name: "replaced", Module: guestbuild.GoSDK(t, "noop"), PoolSize: 1}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	s := newStream("/")
	f := p.NewStreamFilter(s)
	f.OnRequestHeaders(s, true)
	p.Close() // drains in the background: the stream is still open
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		time.Sleep(50 * time.Millisecond) // let Close begin first
		f.OnLog(s)
		f.OnDone(s)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage("wasm plugin closed").Len() != 1 {
		t.Fatal("Runtime.Close returned before the replaced plugin ended its VMs")
	}
	<-ended
}
