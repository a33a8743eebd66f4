//go:build !unix

package wasm

import "github.com/tetratelabs/wazero/experimental"

// linearMemory is wazero's default allocator where mmap is not available.
func (v *vm) linearMemory(*dataImage) experimental.MemoryAllocator { return nil }
