package wasm

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// watchdogTick is how often the watchdog looks at the VMs: a runaway
// callback is stopped between its deadline and one tick after it.
const watchdogTick = 5 * time.Millisecond

// maxTickCredit caps what one tick adds to a call's running time. When the
// whole process was not scheduled (an overloaded machine, a long GC pause)
// the watchdog sees a gap longer than a tick; the guest could not run in
// that gap either, so it is not charged for more than a few ticks of it.
const maxTickCredit = 4 * watchdogTick

// watchdog enforces the callback deadline of every VM of a Runtime from one
// goroutine, so a call into a guest costs two atomic adds instead of
// arming and stopping a timer (whose time reads and heap updates were a
// sixth of a no-op Go filter's cost). Each VM numbers its calls (callSeq,
// odd while a call runs); at every tick the watchdog adds the time since
// the last tick to a call it saw running at the last tick, and stops it
// once that exceeds its deadline. A tick in which the guest ran no loop
// iteration (its countdown did not move) is charged an eighth: a thread
// the OS did not schedule on a busy machine is not taken for a spinning
// guest. It runs only while VMs exist.
type watchdog struct {
	mu      sync.Mutex
	vms     map[*vm]*watchState // guarded by mu
	running bool                // the goroutine is running; guarded by mu
}

// watchState is what the watchdog knows of one VM's current call.
type watchState struct {
	seq   uint64        // the call seen running at the last tick (odd), or 0
	spent time.Duration // its running time, as the watchdog counted it
	count uint64        // the guest's countdown at the last tick
}

// idleShare is the part of a tick charged to a call whose guest ran no
// loop iteration during it (its countdown did not move): its thread was
// not scheduled (a busy machine), or it waits in a host function (a guest
// sleeping in poll_oneoff). The first must not pass for a runaway, the
// second must still end: it is stopped after idleShare × its deadline.
const idleShare = 8

// add starts watching v.
func (w *watchdog) add(v *vm) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vms == nil {
		w.vms = make(map[*vm]*watchState)
	}
	w.vms[v] = &watchState{}
	if !w.running {
		w.running = true
		go w.loop()
	}
}

// remove stops watching v; the goroutine ends at its next tick when no VM
// is left.
func (w *watchdog) remove(v *vm) {
	w.mu.Lock()
	delete(w.vms, v)
	w.mu.Unlock()
}

// stop forgets every VM (the Runtime closed their modules); the goroutine
// ends at its next tick.
func (w *watchdog) stop() {
	w.mu.Lock()
	clear(w.vms)
	w.mu.Unlock()
}

func (w *watchdog) loop() {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	last := time.Now()
	for now := range t.C {
		credit := min(now.Sub(last), maxTickCredit)
		last = now
		w.mu.Lock()
		if len(w.vms) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		for v, st := range w.vms {
			seq := v.callSeq.Load()
			if seq&1 == 0 { // idle
				st.seq, st.spent = 0, 0
				continue
			}
			// Accounting samples here: a VM found in a call at a tick is
			// charged the tick to its plugin, so over many ticks each
			// plugin is charged the time its calls ran, without a clock
			// read per call (accounting.go).
			if p := v.charged.Load(); p != nil {
				p.events.acct.guestNanos.Add(uint64(credit))
			}
			var count uint64
			if g := v.countdown.Load(); g != nil {
				count = (*g).Get()
			}
			if seq != st.seq { // a call that began since the last tick
				st.seq, st.spent, st.count = seq, 0, count
				continue
			}
			if count != st.count || v.countdown.Load() == nil {
				st.spent += credit
			} else {
				st.spent += credit / idleShare
			}
			st.count = count
			if st.spent >= v.callLimit() {
				v.interruptCall(seq)
				st.spent = 0 // once per call
			}
		}
		w.mu.Unlock()
	}
}

// callLimit is the deadline of the call v runs now, by the plugin whose
// callback it is (read atomically: with shared VMs that changes per call).
func (v *vm) callLimit() time.Duration {
	p := v.charged.Load()
	if p == nil {
		return DefaultStartTimeout
	}
	if v.starting.Load() {
		return p.lifecycleTimeout()
	}
	return p.spec.CallbackTimeout
}

// interruptCall stops call seq of v: it sets the module's interrupt flag
// (the guest traps at its next loop iteration) or, for a module without
// one, closes it (wazero's termination checks then stop the call).
func (v *vm) interruptCall(seq uint64) {
	v.timedOut.Store(true)
	g := v.interrupt.Load()
	if g == nil {
		if m := v.running.Load(); m != nil && v.callSeq.Load() == seq {
			_ = (*m).CloseWithExitCode(context.Background(), 1)
		}
		return
	}
	(*g).Set(1)
	// The call may have ended between the watchdog's look and the flag:
	// then the flag would stop the VM's next call, which did nothing wrong.
	// Take it back. (A call that begins and sees the flag in the few
	// instructions between the two is stopped, blamed on the overrun.)
	if v.callSeq.Load() != seq {
		(*g).Set(0)
		v.timedOut.Store(false)
	}
}

// enter and leave bracket a call into the guest for the watchdog.
func (v *vm) enter() { v.callSeq.Add(1) }
func (v *vm) leave() { v.callSeq.Add(1) }

// vmDeadline is the per-VM state the watchdog reads and writes.
type vmDeadline struct {
	// charged is the plugin whose callback runs (or ran last): the
	// watchdog's deadline and time accounting read it without v.mu.
	charged atomic.Pointer[Plugin]
	// callSeq numbers the calls into the guest: odd while one runs.
	callSeq atomic.Uint64
	// starting: the call running now is part of the VM's start
	// (_initialize, on_vm_start, on_configure), under the longer
	// lifecycleTimeout.
	starting atomic.Bool
	// timedOut: the watchdog stopped a call (it is why the call failed).
	timedOut atomic.Bool
	// interrupt is the module's interrupt flag (nil: a module compiled with
	// wazero's termination checks, which the watchdog closes instead).
	interrupt atomic.Pointer[api.MutableGlobal]
	// countdown is the module's loop countdown (nil without the flag).
	countdown atomic.Pointer[api.Global]
	running   atomic.Pointer[api.Module]
}
