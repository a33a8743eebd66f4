package wasm

import (
	"testing"
)

// TestReturnPointersAtTheEndOfMemory: a host function stores its result's
// pointer and length at addresses the guest gives; one that ends exactly
// at the end of guest memory is fine, one byte further is refused.
func TestReturnPointersAtTheEndOfMemory(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Name: "bounds", Module: wat(t, "noop")}, Env{})
	h := newHostEnv(t, p, newStream("/x"))
	size := uint64(h.v.mem.Size())
	path, n := h.put([]byte("plugin_name"))
	for _, tc := range []struct {
		name           string
		retPtr, retLen uint64
		want           uint32
	}{
		{"both inside", retPtr, retLen, statusOK},
		{"length slot ends at the end", retPtr, size - 4, statusOK},
		{"pointer slot ends at the end", size - 4, retLen, statusOK},
		{"length slot one byte out", retPtr, size - 3, statusInvalidMemoryAccess},
		{"pointer slot one byte out", size - 3, retLen, statusInvalidMemoryAccess},
		{"pointer slot past the end", size, retLen, statusInvalidMemoryAccess},
		{"pointer slot far out", 1<<32 - 1, retLen, statusInvalidMemoryAccess},
	} {
		if st := h.call("proxy_get_property", path, n, tc.retPtr, tc.retLen); st != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, st, tc.want)
			continue
		}
		if tc.want != statusOK {
			continue
		}
		ptr, _ := h.v.mem.ReadUint32Le(uint32(tc.retPtr))
		l, _ := h.v.mem.ReadUint32Le(uint32(tc.retLen))
		if got, _ := h.v.mem.Read(ptr, l); string(got) != "bounds" {
			t.Errorf("%s: result %q, want %q", tc.name, got, "bounds")
		}
	}
}
