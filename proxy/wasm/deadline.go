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
	// thread ran the call at the last tick (0: not known), which had used
	// cpu then (threadCPU).
	thread int32
	cpu    time.Duration
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
				st.seq, st.spent, st.count, st.thread = seq, 0, count, 0
				v.askThread(seq)
				continue
			}
			if count != st.count || v.countdown.Load() == nil {
				st.spent += st.ran(v, seq, credit)
			} else {
				st.spent += credit / idleShare
				st.thread = 0
			}
			st.count = count
			v.askThread(seq)
			if st.spent >= v.callLimit() {
				v.interruptCall(seq)
				st.spent = 0 // once per call
			}
		}
		w.mu.Unlock()
	}
}

// ran is what a tick adds to a call that ran loop iterations during it:
// the tick (credit), or less when the thread that runs the guest used less
// CPU than that since the last tick. On a machine with more runnable
// threads than CPUs a guest thread runs in slices, and a call that needs a
// few milliseconds of CPU (a Go guest's garbage collection, its first
// touch of its memory) spans many ticks with progress in each: charged by
// the clock, it passed for a runaway. The thread is known only when the
// guest stepped out into Go since the last tick (askThread) on the same
// thread as at the last tick; otherwise the tick is charged whole, so a
// guest that waits in host calls between a few iterations, or moves
// between threads, is still stopped by the clock.
func (st *watchState) ran(v *vm, seq uint64, credit time.Duration) time.Duration {
	tid, fresh := v.threadOf(seq)
	if !fresh {
		st.thread = 0
		return credit
	}
	cpu, ok := threadCPU(tid)
	if !ok {
		st.thread = 0
		return credit
	}
	prevTid, prevCPU := st.thread, st.cpu
	st.thread, st.cpu = tid, cpu
	if prevTid != tid || cpu < prevCPU {
		return credit
	}
	return min(credit, cpu-prevCPU)
}

// askThread asks call seq of v to say which thread runs it at its next
// step out into Go (noteThread).
func (v *vm) askThread(seq uint64) {
	v.threadWanted.Store(seq)
}

// noteThread records the thread running v's guest now, if the watchdog
// asked since the last tick. It runs on the guest's own thread when a
// rewritten module steps out into Go (memory.grow 0, package interrupt):
// every YieldEvery loop iterations, never on a short callback's path.
func (d *vmDeadline) noteThread() {
	if seq := d.threadWanted.Load(); seq != 0 && seq == d.callSeq.Load() {
		d.thread.Store(currentThread())
		d.threadSeq.Store(seq)
		d.threadWanted.Store(0)
	}
}

// threadOf is the thread that call seq ran on when it last stepped out
// into Go, and whether that was since the watchdog last asked.
func (v *vm) threadOf(seq uint64) (int32, bool) {
	if v.threadWanted.Load() != 0 || v.threadSeq.Load() != seq {
		return 0, false
	}
	tid := v.thread.Load()
	return tid, tid != 0
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
// and its countdown to 1 (the guest traps at its next loop iteration, or
// at the latest YieldEvery iterations later) or, for a module without
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
	// The rewritten loops read the flag only when their countdown reaches
	// zero: bring that to the next iteration (package interrupt).
	if c := v.countdown.Load(); c != nil {
		if mc, ok := (*c).(api.MutableGlobal); ok {
			mc.Set(1)
		}
	}
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
	// threadWanted is the call the watchdog asked to name its thread (0:
	// none); thread and threadSeq are the answer: the thread's id and the
	// call it ran (ran, noteThread).
	threadWanted atomic.Uint64
	thread       atomic.Int32
	threadSeq    atomic.Uint64
}
