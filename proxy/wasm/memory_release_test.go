//go:build linux

package wasm

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// A VM replaced after a trap gives its memory back: a filter that fills
// its linear memory to the limit, touching every page, and traps, again
// and again, leaves open and reserved only the memories of the pool's
// live VMs (issue 18 §1: RSS bounded while trapping VMs are replaced).
// The replaced VMs' pages go back to the OS when wazero closes them
// (mmapMemory.Free); their address space once nothing holds them.
func TestTrappedVMsReleaseMemory(t *testing.T) {
	const pages, pool, traps = 64, 2, 8
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "trap"), VMConfig: []byte{'M'}, MemoryLimitPages: pages, PoolSize: pool}, Env{})
	full := func() bool {
		for _, s := range p.slots {
			if s.vm.Load() == nil {
				return false
			}
		}
		return true
	}
	for i := 0; i < traps; i++ {
		// Each slot's VMs crash soon after their start, so its rebuilds
		// back off (100 ms, 200 ms, …): wait for a full pool each time.
		eventuallyTrue(t, 60*time.Second, "a full pool", full)
		s := newStream("/", "X-Boom", "1")
		if o := runStream(p, s); o.upstream || s.Response.StatusCode() != failStatus {
			t.Fatalf("hog %d: %+v status %d, want the fail_closed answer", i, o, s.Response.StatusCode())
		}
	}
	eventuallyTrue(t, 60*time.Second, "a full pool after the traps", full)
	if n := p.events.n[eventTrap].Load(); n != traps {
		t.Fatalf("traps = %d, want %d", n, traps)
	}
	// vm_replaced is counted just after the slot gets its VM.
	eventuallyTrue(t, 60*time.Second, fmt.Sprintf("%d replacements counted", traps), func() bool {
		return p.events.n[eventVMReplaced].Load() == traps
	})
	want := int64(pool) * pages << 16
	eventuallyTrue(t, 60*time.Second, "only the live VMs' memories open and mapped", func() bool {
		runtime.GC() // the cleanups that unmap run after a GC finds the VMs unreachable
		return rt.linear.open.Load() == pool && rt.linear.mapped.Load() == want
	})
	for _, s := range p.slots {
		v := s.vm.Load()
		if v == nil {
			continue
		}
		buf, _ := v.mem.Read(0, v.mem.Size())
		if mib := residentMiB(buf); mib > 1 {
			t.Errorf("a fresh VM has %.2f MiB of its linear memory resident, want its start's few pages", mib)
		}
	}
	p.engine.mu.Lock()
	modules := len(p.engine.compiled)
	p.engine.mu.Unlock()
	if modules != 1 {
		t.Errorf("%d compiled modules after %d replacements, want the plugin's one", modules, traps)
	}
	closeAndWait(p)
	eventuallyTrue(t, 60*time.Second, "nothing open or mapped after the plugin closed", func() bool {
		runtime.GC()
		return rt.linear.open.Load() == 0 && rt.linear.mapped.Load() == 0
	})
	p.engine.mu.Lock()
	defer p.engine.mu.Unlock()
	if n := len(p.engine.compiled); n != 0 {
		t.Errorf("%d compiled modules left after the plugin closed", n)
	}
}
