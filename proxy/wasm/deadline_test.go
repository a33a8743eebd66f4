package wasm

import (
	"testing"
	"time"
)

// A tick in which the guest ran is charged the tick, or the CPU its
// process used during it when that is less (the guest's thread cannot
// have run longer) but never less than an idle tick; an unknown process
// CPU leaves the tick.
func TestWatchdogChargesAtMostTheProcessCPU(t *testing.T) {
	const tick = 5 * time.Millisecond
	for _, c := range []struct {
		procCPU time.Duration
		want    time.Duration
		how     byte
	}{
		{procCPU: 2 * tick, want: tick, how: chargeClock}, // two threads busy
		{procCPU: tick, want: tick, how: chargeClock},
		{procCPU: tick / 2, want: tick / 2, how: chargeCPU}, // the process was starved
		// Never below an idle tick: a guest sleeping between iterations
		// in an idle process is still stopped.
		{procCPU: tick / 100, want: tick / idleShare, how: chargeCPU},
		{procCPU: 0, want: tick / idleShare, how: chargeCPU},
		{procCPU: -1, want: tick, how: chargeClock}, // not known
	} {
		if got, how := ran(tick, c.procCPU); got != c.want || how != c.how {
			t.Errorf("ran(%v, %v) = %v, %c; want %v, %c", tick, c.procCPU, got, how, c.want, c.how)
		}
	}
}

// The error of a stopped call says how its time was counted, the last
// eight ticks oldest first.
func TestWatchdogHistory(t *testing.T) {
	var st watchState
	st.note(time.Millisecond, chargeIdle)
	for i := 0; i < 8; i++ {
		st.note(5*time.Millisecond, chargeClock)
	}
	st.note(2*time.Millisecond, chargeCPU)
	st.spent = 48 * time.Millisecond
	want := "10 ticks charged 48ms, last 8: clock 5ms clock 5ms clock 5ms clock 5ms clock 5ms clock 5ms clock 5ms cpu 2ms"
	if got := *st.history(); got != want {
		t.Errorf("history = %q\nwant      %q", got, want)
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
