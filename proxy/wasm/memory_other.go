//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

// linearMemory is wazero's default allocator outside Linux (the mmap
// allocator relies on Linux's MADV_DONTNEED giving zeroed pages back).
func (v *vm) linearMemory(*dataImage) experimental.MemoryAllocator { return nil }
