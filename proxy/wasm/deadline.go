package wasm

import (
	"context"
	"fmt"
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
	// ticks are the last charges to the call, the latest at
	// ticks-1 (mod len): what the error of a stopped call says.
	last  [8]charge
	ticks int
}

// charge is what one tick added to a call, and why.
type charge struct {
	d   time.Duration
	how byte
}

// How a tick was charged.
const (
	chargeClock byte = 'c' // the tick: the guest ran
	chargeCPU   byte = 'p' // less: the process's CPU during the tick
	chargeIdle  byte = 'i' // an eighth of the tick: the guest ran no iteration
)

func (st *watchState) note(d time.Duration, how byte) {
	st.last[st.ticks%len(st.last)] = charge{d, how}
	st.ticks++
}

// history says how a stopped call's time was counted, oldest tick first:
// "14 ticks charged 52ms, last 8: clock 5ms cpu 1.2ms idle 625µs …". It
// allocates, once per stopped call.
func (st *watchState) history() *string {
	n := min(st.ticks, len(st.last))
	b := fmt.Appendf(nil, "%d ticks charged %v, last %d:", st.ticks, st.spent, n)
	for i := st.ticks - n; i < st.ticks; i++ {
		c := st.last[i%len(st.last)]
		name := "clock"
		switch c.how {
		case chargeCPU:
			name = "cpu"
		case chargeIdle:
			name = "idle"
		}
		b = fmt.Appendf(b, " %s %v", name, c.d)
	}
	s := string(b)
	return &s
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
	// lastCPU is the process's CPU at the last tick, -1 when that tick did
	// not read it: the clock is read only at ticks that find a call
	// running (a getrusage every tick was 0.2% of a loaded proxy's CPU
	// samples, for ticks that almost always find every VM idle). A call
	// is charged only at a tick after one that saw it running, which read
	// the clock.
	last, lastCPU := time.Now(), time.Duration(-1)
	for now := range t.C {
		credit := min(now.Sub(last), maxTickCredit)
		last = now
		w.mu.Lock()
		if len(w.vms) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		procCPU := time.Duration(-1) // not known
		if w.anyCallLocked() {
			cpu := processCPU()
			if cpu >= 0 && lastCPU >= 0 {
				procCPU = cpu - lastCPU
			}
			lastCPU = cpu
		} else {
			lastCPU = -1
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
				st.seq, st.spent, st.count, st.ticks = seq, 0, count, 0
				continue
			}
			var c time.Duration
			how := chargeIdle
			if count != st.count || v.countdown.Load() == nil {
				c, how = ran(credit, procCPU)
			} else {
				c = credit / idleShare
			}
			st.spent += c
			st.note(c, how)
			st.count = count
			if st.spent >= v.callLimit() {
				v.stopDetail.Store(st.history())
				v.interruptCall(seq)
				st.spent = 0 // once per call
			}
		}
		w.mu.Unlock()
	}
}

// anyCallLocked reports whether a VM is in a call. The caller holds w.mu.
func (w *watchdog) anyCallLocked() bool {
	for v := range w.vms {
		if v.callSeq.Load()&1 != 0 {
			return true
		}
	}
	return false
}

// ran is what a tick adds to a call whose guest ran loop iterations
// during it: the tick (credit), or the CPU the whole process used during
// it (procCPU) when that is less. On a machine with more runnable threads
// than CPUs a guest thread runs in slices, and a call that needs a few
// milliseconds of CPU (a Go guest's garbage collection, its first touch of
// its memory) spans many ticks with progress in each: charged by the clock
// alone, it passed for a runaway (a no-op Go guest in the micro-benchmarks
// at load 25 on 2 cores). The guest's thread cannot have run longer than
// its process, so a spinning guest is still charged at least what it ran.
// The charge is never below an idle tick's (credit / idleShare): a guest
// that sleeps in a host call between a few iterations, in an otherwise
// idle process, is stopped as a guest blocked in one is.
func ran(credit, procCPU time.Duration) (time.Duration, byte) {
	if procCPU >= 0 && procCPU < credit {
		return max(procCPU, credit/idleShare), chargeCPU
	}
	return credit, chargeClock
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
	// stopDetail is how the watchdog counted the call it stopped last
	// (watchState.history), for the error.
	stopDetail atomic.Pointer[string]
}
