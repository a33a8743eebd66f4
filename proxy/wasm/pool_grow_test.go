package wasm

import (
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
)

// A pool whose size was defaulted starts with one VM and builds another
// only when a stream has to wait for a busy VM, up to its size; streams
// that merely stay bound to an idle VM (waiting for their upstream) build
// nothing. A pool_size from the config is built whole at load. Growth is
// not a replacement.
func TestPoolGrowsOnDemand(t *testing.T) {
	if s := (PluginSpec{}).withDefaults(); !s.GrowPool || s.PoolSize != DefaultPoolSize() {
		t.Fatalf("a spec with no pool size: PoolSize %d, GrowPool %t; want the default size, grown on demand", s.PoolSize, s.GrowPool)
	}
	if s := (PluginSpec{PoolSize: 3}).withDefaults(); s.GrowPool {
		t.Fatal("a configured pool_size grows on demand; want it built at load")
	}
	const size = 3
	rt := newRuntime(t)
	whole := load(t, rt, PluginSpec{Name: "whole", Module: wat(t, "noop"), PoolSize: size}, Env{})
	if n := builtVMs(whole); n != size {
		t.Fatalf("a configured pool of %d started %d VMs", size, n)
	}
	p := load(t, rt, PluginSpec{Name: "grow", Module: wat(t, "noop"), PoolSize: size, GrowPool: true}, Env{})
	if n := builtVMs(p); n != 1 {
		t.Fatalf("a growing pool started %d VMs, want 1", n)
	}

	// Streams bound to the VM between callbacks, as while their upstream
	// answers: no contention, no growth.
	var mu sync.Mutex
	var open []*filter.Stream
	var filters []filter.StreamFilter
	var wg sync.WaitGroup
	begin := func() {
		defer wg.Done()
		s := newStream("/")
		f := p.NewStreamFilter(s)
		if a := f.OnRequestHeaders(s, true); a != filter.Continue {
			t.Errorf("request headers: %v", a)
		}
		mu.Lock()
		open, filters = append(open, s), append(filters, f)
		mu.Unlock()
	}
	t.Cleanup(func() {
		wg.Wait()
		for i, f := range filters {
			f.OnLog(open[i])
			f.OnDone(open[i])
		}
	})
	for range 3 {
		wg.Add(1)
		begin()
	}
	if n := builtVMs(p); n != 1 {
		t.Fatalf("streams that never waited built %d VMs, want 1", n)
	}

	// A stream that has to wait for a busy VM (its lock held, as by a
	// call in progress) builds one more, until the pool is full.
	//
	// held are the VMs the test holds locked. Whatever the outcome they are unlocked
	// before the cleanup above waits for begin, which waits for a VM.
	var held []*vm
	t.Cleanup(func() {
		for _, v := range held {
			v.mu.Unlock()
		}
	})
	for want := 2; want <= size+1; want++ {
		for _, s := range p.slots {
			if v := s.vm.Load(); v != nil {
				v.mu.Lock()
				held = append(held, v)
			}
		}
		wg.Add(1)
		go begin() // waits for a VM, and asks for another
		if want <= size {
			eventuallyTrue(t, 60*time.Second, "one more VM", func() bool { return builtVMs(p) == want })
		} else {
			eventuallyTrue(t, 60*time.Second, "the stream waiting", func() bool {
				for _, v := range held {
					if v.waiters.Load() > 0 {
						return true
					}
				}
				return false
			})
		}
		for _, v := range held {
			v.mu.Unlock()
		}
		held = held[:0]
		wg.Wait()
	}
	if n, u := builtVMs(p), p.group.unbuilt.Load(); n != size || u != 0 {
		t.Fatalf("%d VMs built, %d unbuilt; want the pool's %d and none", n, u, size)
	}
	if n := p.events.n[eventVMReplaced].Load(); n != 0 {
		t.Fatalf("growing the pool counted %d replacements", n)
	}
}

// builtVMs counts the pool's slots that have a VM.
func builtVMs(p *Plugin) int {
	n := 0
	for _, s := range p.slots {
		if s.vm.Load() != nil {
			n++
		}
	}
	return n
}
