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
// once that exceeds its deadline.
//
// The deadline is CPU the guest spent running its own code, so only what
// the guest can have run is charged (tickCharge): a tick in which the guest ran
// no loop iteration (its countdown did not move) is charged nothing, and
// one in which it did is charged at most the CPU the whole process used.
// A spinning guest runs loop iterations in every tick it gets a CPU (the
// flag that stops it is read only at loop headers: package interrupt), so
// it is stopped once it has spun for its deadline. A guest that made no iteration waited: in
// a host function (a log line to a full pipe, a sleep, random_get), or for
// a CPU (its thread not scheduled by the OS, or its goroutine by Go after
// a step out into Go); none of that is spinning, and charging it stopped a
// healthy no-op guest on a loaded machine. A call is also stopped after
// wallLimit of wall time whatever it does (a guest sleeping in a loop).
// It runs only while VMs exist.
type watchdog struct {
	mu      sync.Mutex
	vms     map[*vm]*watchState // guarded by mu
	running bool                // the goroutine is running; guarded by mu
	// wallFor, when set (tests), is the wall limit of every call instead
	// of wallLimit's; set before the first VM is added.
	wallFor time.Duration
}

// watchState is what the watchdog knows of one VM's current call.
type watchState struct {
	seq   uint64        // the call seen running at the last tick (odd), or 0
	spent time.Duration // its CPU time, as the watchdog counted it
	wall  time.Duration // its wall time since the first tick that saw it
	count uint64        // the guest's countdown at the last tick
	stage uint32        // the call's stage at the last tick (vm.stageNow)
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
	chargeIdle  byte = 'i' // nothing: the guest ran no iteration (it waited)
)

func (st *watchState) note(d time.Duration, how byte) {
	st.last[st.ticks%len(st.last)] = charge{d, how}
	st.ticks++
}

// history says how a stopped call's time was counted, oldest tick first:
// "14 ticks charged 52ms over 70ms, last 8: clock 5ms cpu 1.2ms idle 0s …",
// after "wall limit: " when the call was stopped by its wall limit. It
// allocates, once per stopped call.
func (st *watchState) history(wall bool) *string {
	var b []byte
	if wall {
		b = append(b, "wall limit: "...)
	}
	n := min(st.ticks, len(st.last))
	b = fmt.Appendf(b, "%d ticks charged %v over %v, last %d:", st.ticks, st.spent, st.wall, n)
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

// wallShare and minWallLimit make the wall-clock backstop of a call:
// wallShare × its deadline, at least minWallLimit (10 s with the default
// 50 ms deadline). It stops what the CPU deadline does not count, a guest
// that waits for ever (a sleep in a loop), long after any healthy call has
// ended: a call that waited 10 s has lost its client anyway. Wall time is
// counted as ticks are (at most maxTickCredit a tick), so a process that
// is not scheduled at all is not stopped by it either.
const (
	wallShare    = 200
	minWallLimit = 10 * time.Second
)

// wallLimit is the wall time after which a call with deadline d is
// stopped.
func (w *watchdog) wallLimit(d time.Duration) time.Duration {
	if w.wallFor > 0 {
		return w.wallFor
	}
	return max(wallShare*d, minWallLimit)
}

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
				st.seq, st.spent, st.wall = 0, 0, 0
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
			stage := v.stageNow()
			if seq != st.seq || stage != st.stage { // a call, or a callback of a combined call, that began since the last tick
				st.seq, st.stage, st.spent, st.wall, st.count, st.ticks = seq, stage, 0, 0, count, 0
				continue
			}
			c, how := tickCharge(count != st.count || v.countdown.Load() == nil, credit, procCPU)
			st.spent += c
			st.wall += credit
			st.note(c, how)
			st.count = count
			limit := v.callLimit()
			if wl := w.wallLimit(limit); st.spent >= limit || st.wall >= wl {
				v.stopDetail.Store(st.history(st.spent < limit))
				v.interruptCall(seq)
				st.spent, st.wall = 0, 0 // once per limit
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

// tickCharge is what a tick of credit adds to a call's CPU time. A tick in
// which the guest ran no loop iteration (progressed false; its countdown
// did not move) adds nothing: the guest waited, in a host function or for
// a CPU. One in which it did adds the tick, or the CPU the whole process
// used during it (procCPU) when that is less. On a machine with more
// runnable threads than CPUs a guest thread runs in slices, and a call
// that needs a few milliseconds of CPU (a Go guest's garbage collection,
// its first touch of its memory) spans many ticks with progress in each:
// charged by the clock alone, it passed for a runaway (a no-op Go guest in
// the micro-benchmarks at load 25 on 2 cores). The guest's thread cannot
// have run longer than its process, so a spinning guest is still charged
// at least what it ran. A module without a countdown (wazero's termination
// checks) always progresses.
func tickCharge(progressed bool, credit, procCPU time.Duration) (time.Duration, byte) {
	switch {
	case !progressed:
		return 0, chargeIdle
	case procCPU >= 0 && procCPU < credit:
		return procCPU, chargeCPU
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
	// stage is the dispatcher's stage global (nil without it): a call
	// that runs several callbacks (vm.callCombined) changes it before
	// each, and the watchdog counts each callback's time from zero.
	stage   atomic.Pointer[api.MutableGlobal]
	running atomic.Pointer[api.Module]
	// stopDetail is how the watchdog counted the call it stopped last
	// (watchState.history), for the error.
	stopDetail atomic.Pointer[string]
}
