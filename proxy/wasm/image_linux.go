package wasm

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// imagesSupported: linear memories can start from a shared data image.
const imagesSupported = true

// dataImage is the initial content of a module's linear memory (its data
// segments laid out, package dataimage) in a memfd that every VM of the
// module maps copy-on-write: the pages a VM does not write stay one copy
// for all of them, and starting a VM copies nothing.
type dataImage struct {
	f    *os.File
	size int // the image rounded up to the OS page: the part mapped
}

func newDataImage(image []byte) (*dataImage, error) {
	fd, err := unix.MemfdCreate("weft-wasm-data", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("data image: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "weft-wasm-data")
	page := os.Getpagesize()
	size := (len(image) + page - 1) / page * page
	if err := f.Truncate(int64(size)); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("data image: %w", err)
	}
	if _, err := f.WriteAt(image, 0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("data image: %w", err)
	}
	return &dataImage{f: f, size: size}, nil
}

func (d *dataImage) close() { _ = d.f.Close() }

// mapInto maps the image copy-on-write over the start of mem, a
// reservation of at least d.size bytes made with mmap; where that fails it
// copies the image in.
func (d *dataImage) mapInto(mem []byte) {
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(&mem[0])), uintptr(d.size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED, d.f.Fd(), 0)
	if errno != 0 {
		d.readInto(mem)
		return
	}
	// No fault-around: a read maps the page read, not its 15 neighbours,
	// so a VM's RSS counts the image pages it uses.
	_ = unix.Madvise(mem[:d.size], unix.MADV_RANDOM)
}

// readInto copies the image into mem.
func (d *dataImage) readInto(mem []byte) {
	_, _ = d.f.ReadAt(mem[:min(d.size, len(mem))], 0)
}
