//go:build linux

package wasm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"unsafe"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// TestVMMemoryFigures measures what an idle VM of a Go SDK guest costs the
// process: RSS with one plugin of one VM, then with that plugin at
// WEFT_VM_FIGURES VMs, both after a GC that returns freed memory to the
// OS. Run it on demand,
//
//	WEFT_VM_FIGURES=9 go test -count=1 -run TestVMMemoryFigures -v ./proxy/wasm/
func TestVMMemoryFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WEFT_VM_FIGURES"))
	if n < 2 {
		t.Skip("set WEFT_VM_FIGURES=N (VMs, at least 2) to measure")
	}
	mod := guestbuild.GoSDK(t, "noop")
	rss := func() float64 {
		runtime.GC()
		debug.FreeOSMemory()
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Skip("no /proc/self/status")
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "VmRSS:" {
				kb, _ := strconv.Atoi(string(f[1]))
				return float64(kb) / 1024
			}
		}
		t.Fatal("no VmRSS")
		return 0
	}
	// PSS counts a page mapped by several VMs (a shared data image) once in
	// all; VmRSS counts it in each VM that touched it.
	pss := func() float64 {
		b, err := os.ReadFile("/proc/self/smaps_rollup")
		if err != nil {
			return -1
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "Pss:" {
				kb, _ := strconv.Atoi(string(f[1]))
				return float64(kb) / 1024
			}
		}
		return -1
	}
	base := rss()
	rt := newRuntime(t)
	one, err := rt.Load(context.Background(), PluginSpec{Name: "one", Module: mod, PoolSize: 1}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	first := rss()
	firstPss := pss()
	many, err := rt.Load(context.Background(), PluginSpec{Name: "many", Module: mod, PoolSize: n}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	all := rss()
	allPss := pss()
	v := many.slots[0].vm.Load()
	pages := v.mem.Size() / 65536
	buf, _ := v.mem.Read(0, v.mem.Size())
	t.Logf("linear memory of one VM: %.2f MiB resident of %.2f", residentMiB(buf), float64(len(buf))/(1<<20))
	closeAndWait(one)
	closeAndWait(many)
	per := (all - first) / float64(n)
	t.Logf("RSS: %.1f MiB before, %.1f MiB with one VM (+%.1f: wazero, the compiled module, the VM), %.1f MiB with %d more VMs: %.2f MiB per VM; linear memory %d pages (%.2f MiB) after start",
		base, first, first-base, all, n, per, pages, float64(pages)/16)
	t.Logf("PSS: %.1f MiB with one VM, %.1f MiB with %d more: %.2f MiB per VM", firstPss, allPss, n, (allPss-firstPss)/float64(n))
	fmt.Fprintf(os.Stderr, "per-vm-mib: %.2f\n", per)
}

// residentMiB is how much of b is in RAM (mincore).
func residentMiB(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	pages := (len(b) + 4095) / 4096
	vec := make([]byte, pages)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return -1
	}
	n := 0
	for _, c := range vec {
		n += int(c & 1)
	}
	return float64(n) * 4096 / (1 << 20)
}
