package wasm

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A tick in which the guest ran loop iterations is charged the tick, or
// the CPU its process used during it when that is less (the guest's
// thread cannot have run longer); an unknown process CPU leaves the tick.
// A tick in which it ran none (it waited in a host function or for a CPU)
// is charged nothing, however long.
func TestWatchdogChargesOnlyWhatTheGuestCanHaveRun(t *testing.T) {
	const tick = 5 * time.Millisecond
	for _, c := range []struct {
		progressed bool
		credit     time.Duration
		procCPU    time.Duration
		want       time.Duration
		how        byte
	}{
		{true, tick, 2 * tick, tick, chargeClock}, // two threads busy
		{true, tick, tick, tick, chargeClock},
		{true, tick, tick / 2, tick / 2, chargeCPU}, // the process was starved
		{true, tick, tick / 100, tick / 100, chargeCPU},
		{true, tick, 0, 0, chargeCPU},
		{true, tick, -1, tick, chargeClock}, // not known
		{false, tick, tick, 0, chargeIdle},  // waited while the process ran
		{false, maxTickCredit, -1, 0, chargeIdle},
	} {
		if got, how := tickCharge(c.progressed, c.credit, c.procCPU); got != c.want || how != c.how {
			t.Errorf("tickCharge(%t, %v, %v) = %v, %c; want %v, %c", c.progressed, c.credit, c.procCPU, got, how, c.want, c.how)
		}
	}
}

// The wall limit of a call is wallShare × its deadline, at least
// minWallLimit.
func TestWatchdogWallLimit(t *testing.T) {
	var w watchdog
	if got := w.wallLimit(DefaultCallbackTimeout); got != minWallLimit {
		t.Errorf("wall limit at the default deadline = %v, want %v", got, minWallLimit)
	}
	if got := w.wallLimit(time.Second); got != wallShare*time.Second {
		t.Errorf("wall limit at a 1s deadline = %v, want %v", got, wallShare*time.Second)
	}
}

// The error of a stopped call says how its time was counted, the last
// eight ticks oldest first, and whether the wall limit stopped it.
func TestWatchdogHistory(t *testing.T) {
	var st watchState
	st.note(time.Millisecond, chargeIdle)
	for i := 0; i < 8; i++ {
		st.note(5*time.Millisecond, chargeClock)
	}
	st.note(2*time.Millisecond, chargeCPU)
	st.spent, st.wall = 48*time.Millisecond, 60*time.Millisecond
	want := "10 ticks charged 48ms over 60ms, last 8: clock 5ms clock 5ms clock 5ms clock 5ms clock 5ms clock 5ms clock 5ms cpu 2ms"
	if got := *st.history(false); got != want {
		t.Errorf("history = %q\nwant      %q", got, want)
	}
	if got := *st.history(true); got != "wall limit: "+want {
		t.Errorf("history at the wall limit = %q", got)
	}
}

// A call that waits in a host function far longer than its deadline (a
// 400 ms sleep in poll_oneoff under a 25 ms deadline) runs no guest code
// meanwhile and is not stopped: the stream completes, nothing is counted
// as a timeout, and the VM serves the next stream. The old watchdog
// charged each such tick an eighth and stopped the call after 200 ms; the
// same ticks come from a guest thread the OS or Go did not schedule on a
// loaded machine. The deadline is above the most one tick can charge
// (maxTickCredit), so a tick that catches the guest's few loop iterations
// after its sleep cannot stop it on a busy machine.
func TestHostCallWaitIsNotCharged(t *testing.T) {
	if maxTickCredit >= 25*time.Millisecond {
		t.Fatalf("maxTickCredit %v: raise the test's deadline above it", maxTickCredit)
	}
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "sleep"), VMConfig: []byte{'s'}, CallbackTimeout: 25 * time.Millisecond}, Env{})
	v := p.slots[0].vm.Load()
	for i := 0; i < 2; i++ {
		s := newStream("/")
		if o := runStream(p, s); !o.upstream || string(s.Request.Header.Peek("X-Ok")) != "yes" {
			var detail string
			if d := v.stopDetail.Load(); d != nil {
				detail = *d
			}
			t.Fatalf("stream %d: %+v x-ok=%q status %d: a call waiting in a host function was stopped (%s)",
				i, o, s.Request.Header.Peek("X-Ok"), s.Response.StatusCode(), detail)
		}
	}
	if n := p.events.n[eventTimeout].Load(); n != 0 {
		t.Errorf("callback timeouts = %d, want 0", n)
	}
	if p.slots[0].vm.Load() != v {
		t.Error("the VM was replaced")
	}
}

// A guest that never ends but spins no CPU (it sleeps 1 ms in a loop) is
// stopped by the wall-clock backstop, here 300 ms, long before its 1 s CPU
// deadline could be charged: the stream fails closed, the stop is counted
// as a callback timeout and says so, and the VM is replaced.
func TestWallLimitStopsASleepingLoop(t *testing.T) {
	rt := newRuntime(t)
	rt.watchdog.wallFor = 300 * time.Millisecond
	p := load(t, rt, PluginSpec{Module: wat(t, "sleep"), VMConfig: []byte{'S'}, CallbackTimeout: time.Second}, Env{})
	v := p.slots[0].vm.Load()
	s := newStream("/")
	if o := runStream(p, s); o.upstream || s.Response.StatusCode() != failStatus {
		t.Fatalf("outcome %+v status %d: a guest sleeping for ever must fail the stream closed", o, s.Response.StatusCode())
	}
	if n := p.events.n[eventTimeout].Load(); n != 1 {
		t.Errorf("callback timeouts = %d, want 1", n)
	}
	if d := v.stopDetail.Load(); d == nil || !strings.HasPrefix(*d, "wall limit: ") {
		t.Errorf("stop detail %v: want the wall limit", d)
	}
	if !waitFor(func() bool { return p.slots[0].vm.Load() != nil }) {
		t.Fatal("vm not replaced")
	}
}

// processCPU reads the process's CPU time, which only grows.
func TestProcessCPU(t *testing.T) {
	a := processCPU()
	if a < 0 {
		t.Skip("no process CPU time on this system")
	}
	for deadline := time.Now().Add(30 * time.Second); processCPU() <= a; {
		if time.Now().After(deadline) {
			t.Fatal("the process CPU time did not grow while the test spun")
		}
	}
}

// A filter that recurses for ever without a loop (a recursive fib) is
// stopped by the default deadline like one spinning in a loop: the stream
// fails closed, the stop is counted, and the VM is replaced. Without the
// rewrite's check at the entry of recursive functions it never stops, and
// the next garbage collection waits for it: the test binary hangs.
func TestRecursiveGuestStoppedByDeadline(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "recurse")}, Env{})
	s := newStream("/")
	if o := runStream(p, s); o.upstream || s.Response.StatusCode() != failStatus {
		t.Fatalf("outcome %+v status %d: a recursing guest must fail the stream closed", o, s.Response.StatusCode())
	}
	if n := p.events.n[eventTimeout].Load(); n != 1 {
		t.Errorf("callback timeouts = %d, want 1", n)
	}
	if !waitFor(func() bool { return p.slots[0].vm.Load() != nil }) {
		t.Fatal("vm not replaced")
	}
}

// A filter that recurses for ever through call_indirect only (a function
// pointer calling itself: an interface method or a closure in a compiled
// guest) is stopped by the default deadline, under either failure policy:
// the client gets the policy's answer (fail_closed: failStatus, the
// upstream not asked; fail_open: the upstream's answer), the stop is
// counted as a callback timeout, the VM is replaced, and streams of
// another plugin complete while it runs. Without the rewrite's check
// before indirect calls it never stops, and the next garbage collection
// waits for it: the test binary hangs.
func TestIndirectRecursionStoppedByDeadline(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail_closed", true: "fail_open"}[failOpen], func(t *testing.T) {
			rt := newRuntime(t)
			mod := wat(t, "recurse_indirect")
			p := load(t, rt, PluginSpec{Name: "runaway", Module: mod, VMConfig: []byte{'r'}, FailOpen: failOpen}, Env{})
			other := load(t, rt, PluginSpec{Name: "other", Module: mod, VMConfig: []byte{'-'}}, Env{})

			// The other plugin's streams, all the while; those that began
			// and ended within one runaway call are counted as overlapping.
			var overlapped, otherOK, otherFailed atomic.Int64
			stop := make(chan struct{})
			done := make(chan struct{})
			var runaway atomic.Pointer[vm]
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					var seq uint64
					if v := runaway.Load(); v != nil {
						seq = v.callSeq.Load()
					}
					s := newStream("/other")
					if o := runStream(other, s); !o.upstream || string(s.Request.Header.Peek("X-Ok")) != "yes" {
						otherFailed.Add(1)
						continue
					}
					otherOK.Add(1)
					if v := runaway.Load(); seq&1 == 1 && v != nil && v.callSeq.Load() == seq {
						overlapped.Add(1)
					}
				}
			}()
			halt := sync.OnceFunc(func() { close(stop); <-done })
			t.Cleanup(halt)

			// A stopped call replaces its VM; run runaway streams until one
			// overlapped another plugin's stream (the first, but for a
			// machine that did not schedule the other goroutine in time).
			for attempt := 1; ; attempt++ {
				old := p.slots[0].vm.Load()
				runaway.Store(old)
				s := newStream("/")
				o := runStream(p, s)
				switch {
				case failOpen && (!o.upstream || s.Response.StatusCode() != 200):
					t.Fatalf("outcome %+v status %d: a stopped fail_open filter must let the stream through", o, s.Response.StatusCode())
				case !failOpen && (o.upstream || s.Response.StatusCode() != failStatus):
					t.Fatalf("outcome %+v status %d: a stopped fail_closed filter must answer %d", o, s.Response.StatusCode(), failStatus)
				case string(s.Request.Header.Peek("X-Ok")) == "yes":
					t.Fatal("the runaway call ended on its own")
				}
				if n := p.events.n[eventTimeout].Load(); n != uint64(attempt) {
					t.Fatalf("callback timeouts = %d after %d runaway streams", n, attempt)
				}
				if n, ev := p.events.n[eventFailOpen].Load(), p.events.n[eventFailClosed].Load(); failOpen && n != uint64(attempt) || !failOpen && ev != uint64(attempt) {
					t.Errorf("fail_open events %d, fail_closed events %d after %d runaway streams", n, ev, attempt)
				}
				if !waitFor(func() bool { v := p.slots[0].vm.Load(); return v != nil && v != old }) {
					t.Fatal("vm not replaced")
				}
				if !waitFor(func() bool { return p.events.n[eventVMReplaced].Load() >= uint64(attempt) }) {
					t.Errorf("vm_replaced = %d after %d stops", p.events.n[eventVMReplaced].Load(), attempt)
				}
				if overlapped.Load() > 0 || attempt == 5 {
					break
				}
			}
			halt()
			if overlapped.Load() == 0 || otherFailed.Load() != 0 {
				t.Errorf("the other plugin's streams: %d completed, %d during a runaway call, %d failed",
					otherOK.Load(), overlapped.Load(), otherFailed.Load())
			}
		})
	}
}

// A filter whose allocator asks the host for data (which the host hands
// over through the allocator again) recurses guest → host → allocator →
// host … for ever without a loop or a call cycle in the module, so no check
// of the rewrite sees it. The host refuses to enter the allocator again
// from inside it and traps the call, under either failure policy: the
// client gets the policy's answer, the trap is counted (not as a timeout:
// it ends the call at once), the VM is replaced and the replacement is
// stopped the same way, and streams of another plugin complete meanwhile
// (its allocator calls a host function that does not allocate, which
// stays allowed, and the data it asks for arrives). Without the refusal the call never ends (nested host calls grow the Go
// stack until the process dies).
func TestAllocatorReentryTrapped(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(map[bool]string{false: "fail_closed", true: "fail_open"}[failOpen], func(t *testing.T) {
			rt := newRuntime(t)
			mod := wat(t, "alloc_reenter")
			p := load(t, rt, PluginSpec{Name: "runaway", Module: mod, VMConfig: []byte{'r'}, FailOpen: failOpen}, Env{})
			other := load(t, rt, PluginSpec{Name: "other", Module: mod, VMConfig: []byte{'a'}}, Env{})

			var otherOK, otherFailed atomic.Int64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := newStream("/other")
					if o := runStream(other, s); !o.upstream || string(s.Request.Header.Peek("X-Ok")) != "yes" || string(s.Request.Header.Peek("X-Alloc")) != "yes" {
						otherFailed.Add(1)
					} else {
						otherOK.Add(1)
					}
				}
			}()
			halt := sync.OnceFunc(func() { close(stop); <-done })
			t.Cleanup(halt)

			for attempt := 1; attempt <= 2; attempt++ {
				old := p.slots[0].vm.Load()
				s := newStream("/")
				o := runStream(p, s)
				switch {
				case failOpen && (!o.upstream || s.Response.StatusCode() != 200):
					t.Fatalf("outcome %+v status %d: a trapped fail_open filter must let the stream through", o, s.Response.StatusCode())
				case !failOpen && (o.upstream || s.Response.StatusCode() != failStatus):
					t.Fatalf("outcome %+v status %d: a trapped fail_closed filter must answer %d", o, s.Response.StatusCode(), failStatus)
				case string(s.Request.Header.Peek("X-Ok")) == "yes":
					t.Fatal("the re-entering call ended on its own")
				}
				if n := p.events.n[eventTrap].Load(); n != uint64(attempt) {
					t.Fatalf("traps = %d after %d re-entering streams", n, attempt)
				}
				if n := p.events.n[eventTimeout].Load(); n != 0 {
					t.Errorf("callback timeouts = %d, want 0 (the refusal ends the call, not the deadline)", n)
				}
				if n, ev := p.events.n[eventFailOpen].Load(), p.events.n[eventFailClosed].Load(); failOpen && n != uint64(attempt) || !failOpen && ev != uint64(attempt) {
					t.Errorf("fail_open events %d, fail_closed events %d after %d streams", n, ev, attempt)
				}
				if !waitFor(func() bool { v := p.slots[0].vm.Load(); return v != nil && v != old }) {
					t.Fatal("vm not replaced")
				}
				if !waitFor(func() bool { return p.events.n[eventVMReplaced].Load() >= uint64(attempt) }) {
					t.Errorf("vm_replaced = %d after %d traps", p.events.n[eventVMReplaced].Load(), attempt)
				}
			}
			if !waitFor(func() bool { return otherOK.Load() > 0 }) {
				t.Error("no stream of the other plugin completed")
			}
			halt()
			if otherFailed.Load() != 0 {
				t.Errorf("the other plugin's streams: %d completed, %d failed", otherOK.Load(), otherFailed.Load())
			}
		})
	}
}
