//go:build wasip1

package main

import "unsafe"

// bufferAddress is b's address in the VM's linear memory, where the host
// can write (Go's collector does not move heap objects; the caller keeps
// b referenced).
func bufferAddress(b []byte) (ptr, n uint32) {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))), uint32(len(b))
}
