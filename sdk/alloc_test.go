package sdk

import (
	"testing"
	"unsafe"
)

// TestSlabs: streams and host buffers from the slabs are distinct, never
// overlap, and host buffers are 8-byte aligned with their own bytes.
func TestSlabs(t *testing.T) {
	seen := map[*Stream]bool{}
	for i := range 3 * slabStreams {
		s := newStream(uint32(i+1), 7, uint32(i))
		if seen[s] || s.id != uint32(i+1) || s.root != 7 || s.slot != uint32(i) {
			t.Fatalf("stream %d: reused or not fresh: %+v", i, *s)
		}
		seen[s] = true
	}
	type span struct{ from, to uintptr }
	var spans []span
	for i, n := range []uint32{0, 1, 5, 8, 200, hostSmall, hostSmall + 1, 3000, 9, 17} {
		p := hostBuffer(n)
		b := unsafe.Slice(p, max(n, 1))
		for j := range b {
			b[j] = byte(i + 1)
		}
		from := uintptr(unsafe.Pointer(p))
		if n <= hostSmall && from%8 != 0 {
			t.Errorf("buffer of %d bytes at %#x: not 8-byte aligned", n, from)
		}
		for _, o := range spans {
			if from < o.to && o.from < from+uintptr(len(b)) {
				t.Fatalf("buffer of %d bytes overlaps an earlier one", n)
			}
		}
		spans = append(spans, span{from, from + uintptr(len(b))})
	}
}
