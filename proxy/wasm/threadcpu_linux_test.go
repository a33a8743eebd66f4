package wasm

import (
	"runtime"
	"testing"
	"time"
)

// threadCPU reads another thread's CPU clock: it advances while that
// thread spins and not while it sleeps.
func TestThreadCPU(t *testing.T) {
	tids := make(chan int32)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- currentThread()
		for {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	tid := <-tids
	c0, ok := threadCPU(tid)
	if !ok {
		t.Fatalf("threadCPU(%d) failed", tid)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, ok := threadCPU(tid)
		if !ok {
			t.Fatal("threadCPU failed")
		}
		if c-c0 >= 10*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a spinning thread used %v of CPU in 30 s", c-c0)
		}
		time.Sleep(time.Millisecond)
	}
	for _, none := range []int32{0, -1, 1 << 28} { // pid_max is at most 1<<22
		if _, ok := threadCPU(none); ok {
			t.Errorf("threadCPU(%d) of no thread succeeded", none)
		}
	}
}

// A tick is charged the CPU the guest's thread used since the last tick
// when the guest named its thread since then (noteThread) on the same
// thread as at the last tick, and the whole tick otherwise.
func TestWatchdogChargesThreadCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const seq, tick = 7, 20 * time.Millisecond
	v := &vm{}
	v.callSeq.Store(seq) // a call runs
	var st watchState

	// Not asked, or asked and not answered: the clock.
	if got := st.ran(v, seq, tick); got != tick {
		t.Fatalf("no thread known: charged %v, want %v", got, tick)
	}
	v.askThread(seq)
	if got := st.ran(v, seq, tick); got != tick {
		t.Fatalf("asked, no answer: charged %v, want %v", got, tick)
	}
	// The first answer only starts the thread's count.
	v.noteThread()
	if got := st.ran(v, seq, tick); got != tick {
		t.Fatalf("first answer: charged %v, want %v", got, tick)
	}
	// This thread sleeps through the next tick: it used far less CPU than
	// the tick (it may use some: the sleep itself).
	v.askThread(seq)
	time.Sleep(2 * tick)
	v.noteThread()
	if got := st.ran(v, seq, tick); got >= tick {
		t.Fatalf("a sleeping thread charged %v, want less than %v", got, tick)
	}
	// An answer for another call does not count for this one.
	v.askThread(seq)
	v.callSeq.Store(seq + 2)
	v.noteThread()
	v.callSeq.Store(seq)
	if got := st.ran(v, seq, tick); got != tick {
		t.Fatalf("answer from another call: charged %v, want %v", got, tick)
	}
	// Another thread than at the last tick: the clock.
	st.thread, st.cpu = currentThread()+1, 0
	v.askThread(seq)
	v.noteThread()
	if got := st.ran(v, seq, tick); got != tick {
		t.Fatalf("thread changed: charged %v, want %v", got, tick)
	}
}
