package wasm

import (
	"testing"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// TestDataImageCopyOnWrite: a Go guest's VMs start from one shared data
// image, each with its own copy of what it writes, and run streams.
func TestDataImageCopyOnWrite(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: guestbuild.GoSDK(t, "noop"), PoolSize: 2}, Env{})
	if p.image == nil {
		t.Fatal("the Go guest's data segments were not taken out into an image")
	}
	a, b := p.slots[0].vm.Load(), p.slots[1].vm.Load()
	// An address inside the image that holds data (not zero) in both VMs.
	var addr uint32
	for i := uint32(4096); i < uint32(p.image.size); i++ {
		x, _ := a.mem.ReadByte(i)
		y, _ := b.mem.ReadByte(i)
		if x != 0 && x == y {
			addr = i
			break
		}
	}
	if addr == 0 {
		t.Fatal("no data byte found in the image")
	}
	orig, _ := b.mem.ReadByte(addr)
	a.mu.Lock()
	a.mem.WriteByte(addr, ^orig)
	a.mu.Unlock()
	if got, _ := b.mem.ReadByte(addr); got != orig {
		t.Errorf("a write into one VM's memory shows in the other's: %#x, want %#x", got, orig)
	}
	a.mu.Lock()
	a.mem.WriteByte(addr, orig)
	a.mu.Unlock()
	for range 4 {
		s := newStream("/")
		if o := runStream(p, s); o.req != filter.Continue || !o.upstream {
			t.Fatalf("stream through the image-started VMs: %+v", o)
		}
	}
}
