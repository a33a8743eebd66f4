//go:build linux

package wasm

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"unsafe"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// What an idle VM of a Go SDK guest costs, bounded on what does not depend
// on timing or on the collector (TestVMMemoryFigures measures RSS and PSS
// on demand). Four filters of one module share one compiled module and one
// pool; each VM's linear memory starts small, maps the module's data image
// copy-on-write and owns only the pages its guest wrote. The bounds are
// about twice today's (46 pages; 0.58 MiB private per VM):
// a guest that copied its data into every VM again, or a change that
// built a VM per filter, fails.
func TestGoVMFootprint(t *testing.T) {
	const (
		filters        = 4
		pool           = 2
		maxPages       = 96        // 6 MiB; the noop guest starts at 46
		maxPrivateMiB  = 1.25      // per VM; the noop guest writes ~0.6 MiB
		minImageShared = 512 << 10 // of the noop guest's 1.2 MiB image
	)
	mod := guestbuild.GoSDK(t, "noop")
	rt := newRuntime(t)
	var plugins []*Plugin
	for i := 0; i < filters; i++ {
		plugins = append(plugins, load(t, rt, PluginSpec{Name: fmt.Sprintf("noop%d", i), Module: mod, PoolSize: pool, ShareVMs: true}, Env{}))
	}
	if n := rt.linear.open.Load(); n != pool {
		t.Fatalf("%d filters sharing a pool of %d opened %d linear memories, want %d", filters, pool, n, pool)
	}
	e := plugins[0].engine
	e.mu.Lock()
	compiled := len(e.compiled)
	e.mu.Unlock()
	if compiled != 1 {
		t.Fatalf("%d compiled modules for %d filters of one module, want 1", compiled, filters)
	}
	for _, s := range plugins[0].slots {
		v := s.vm.Load()
		if v == nil {
			t.Fatalf("slot %d has no VM", s.idx)
		}
		m, ok := v.linear.(*mmapMemory)
		if !ok {
			t.Skipf("linear memory is not mmap'd here (%T)", v.linear)
		}
		pages := v.mem.Size() / 65536
		lo := uintptr(unsafe.Pointer(&m.buf[0]))
		private, image := pageKinds(t, lo, lo+uintptr(v.mem.Size()))
		t.Logf("VM %d: linear memory %d pages, %.2f MiB of it resident and private, %.2f MiB resident from the shared data image", s.idx, pages, float64(private)/(1<<20), float64(image)/(1<<20))
		if pages > maxPages {
			t.Errorf("VM %d: linear memory %d pages after start, want at most %d", s.idx, pages, maxPages)
		}
		if mib := float64(private) / (1 << 20); mib > maxPrivateMiB {
			t.Errorf("VM %d: %.2f MiB of its linear memory is its own, want at most %.2f", s.idx, mib, maxPrivateMiB)
		}
		if image < minImageShared {
			t.Errorf("VM %d: %d bytes of the data image resident, want the image shared (at least %d)", s.idx, image, minImageShared)
		}
	}
}

// pageKinds counts the pages of [lo, hi) that are resident, split into
// the process's own (private: anonymous or copied on write) and shared
// ones (mapped from the data image), from /proc/self/pagemap: bit 63 is
// "present", bit 61 "file page or shared anonymous".
func pageKinds(t *testing.T, lo, hi uintptr) (private, shared int64) {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	n := (hi - lo) / page
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, int64(lo/page*8)); err != nil {
		t.Fatalf("pagemap: %v", err)
	}
	for i := uintptr(0); i < n; i++ {
		e := binary.LittleEndian.Uint64(buf[8*i:])
		switch {
		case e&(1<<63) == 0:
		case e&(1<<61) != 0:
			shared += int64(page)
		default:
			private += int64(page)
		}
	}
	return private, shared
}
