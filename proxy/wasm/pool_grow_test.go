package wasm

import (
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
)

// A pool whose size was defaulted starts with one VM and builds another
// only when a new stream finds every VM busy, up to its size; a pool_size
// from the config is built whole at load. Growth is not a replacement.
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
	type open struct {
		s *filter.Stream
		f filter.StreamFilter
	}
	var streams []open
	begin := func() {
		s := newStream("/")
		f := p.NewStreamFilter(s)
		if a := f.OnRequestHeaders(s, true); a != filter.Continue {
			t.Fatalf("request headers: %v", a)
		}
		streams = append(streams, open{s, f})
	}
	t.Cleanup(func() {
		for _, o := range streams {
			o.f.OnLog(o.s)
			o.f.OnDone(o.s)
		}
	})
	begin() // VM 0 was idle: no growth
	if n := builtVMs(p); n != 1 {
		t.Fatalf("one stream on an idle VM built more VMs: %d", n)
	}
	begin() // VM 0 busy: a second VM is built for the streams after this one
	eventuallyTrue(t, 60*time.Second, "a second VM", func() bool { return builtVMs(p) == 2 })
	begin() // goes to the new, idle VM: no growth
	begin() // both busy: the third
	eventuallyTrue(t, 60*time.Second, "a third VM", func() bool { return builtVMs(p) == size })
	for range 3 {
		begin() // all busy, the pool full
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
