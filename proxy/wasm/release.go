package wasm

import (
	"runtime/debug"
	"sync"
	"time"
)

// releaseDelay is how long after the last plugin load the host's heap is
// given back to the OS.
const releaseDelay = time.Second

// heapRelease gives the memory a burst of plugin loads left behind back
// to the OS once the burst is over. Loading a Go guest reads a 2–3 MB
// module, rewrites it (package interrupt), decodes it and reads or
// compiles its machine code: tens of MiB of garbage the Go runtime would
// otherwise keep mapped for minutes (an idle sidecar with four filters held
// 19 MiB of free heap). One debug.FreeOSMemory (a GC and a scavenge) per
// burst, not per load: a config with many filters loads them one by one.
type heapRelease struct {
	mu    sync.Mutex
	timer *time.Timer
}

// soon asks for a release releaseDelay after the last call.
func (h *heapRelease) soon() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer == nil {
		h.timer = time.AfterFunc(releaseDelay, debug.FreeOSMemory)
		return
	}
	h.timer.Reset(releaseDelay)
}

// stop cancels a pending release.
func (h *heapRelease) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
}
