package wasm

import (
	"strings"
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
