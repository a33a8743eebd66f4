package abi

import "unsafe"

// bytesString views b as a string without copying; b must not change.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// String views b as a string without copying. Use it only on bytes the
// host handed over (fresh, owned, never written again).
func String(b []byte) string { return bytesString(b) }
