//go:build linux

package wasm

import (
	"runtime"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory is the allocator of a VM's linear memory: its whole
// maximum reserved at once with mmap (address space only, no RAM until
// touched), grown by reslicing. wazero's default grows a []byte on the Go
// heap by copying it into a larger one, which makes every page of the old
// size resident again, and a Go guest grows its memory while it starts
// (32 → 46 pages): reserving saves about a third of an idle Go VM's RSS.
// The memory is also off the Go heap, so guests' memory does not drive the
// host's garbage collector. Where mmap fails, the memory is on the Go heap.
// With image (the module's data segments, taken out of it), the memory
// starts as a copy-on-write mapping of the image.
func (v *vm) linearMemory(image *dataImage) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err != nil {
			return &heapMemory{image: image}
		}
		if image != nil {
			image.mapInto(b)
		}
		acct := &v.p.rt.linear
		acct.open.Add(1)
		acct.mapped.Add(int64(len(b)))
		m := &mmapMemory{buf: b, acct: acct}
		runtime.AddCleanup(m, func(b []byte) {
			if syscall.Munmap(b) == nil {
				acct.mapped.Add(-int64(len(b)))
			}
		}, b)
		v.linear = m
		return m
	})
}

type mmapMemory struct {
	buf  []byte // the whole reservation
	acct *linearAccount
	// freed: Free ran (wazero calls it once per module; kept so the
	// accounting never counts a memory twice).
	freed bool
}

// Reallocate implements experimental.LinearMemory. memory.grow by 0 pages,
// the interrupt rewrite's step out into Go, lands here: it must be cheap.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory; wazero calls it when the
// module closes. It gives the pages back to the OS at once (reads then see
// zeros, or the data image where one is mapped: whatever still holds the
// closed module cannot fault on it) and
// leaves the reservation to the cleanup linearMemory attached, which
// unmaps it once the VM is unreachable (v.linear), so no code can be
// running on it: wazero forgets the allocator's object when it closes the
// module, but code holding the VM may still hold its api.Memory.
func (m *mmapMemory) Free() {
	if m.freed {
		return
	}
	m.freed = true
	if syscall.Madvise(m.buf, syscall.MADV_DONTNEED) == nil {
		m.acct.open.Add(-1)
	}
}

// heapMemory is a linear memory on the Go heap, grown as wazero's own.
type heapMemory struct {
	buf   []byte
	image *dataImage // copied in at the first allocation
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if m.image != nil {
		m.buf = make([]byte, size)
		m.image.readInto(m.buf)
		m.image = nil
		return m.buf
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
	} else {
		m.buf = append(m.buf[:cap(m.buf)], make([]byte, size-uint64(cap(m.buf)))...)
	}
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
