// Package exepages gives back the pages of the running executable's
// read-only segments (machine code, read-only data, the function tables)
// that the process has mapped.
//
// A Go process maps every page of its executable it has touched, and the
// kernel maps the neighbours of each page it faults in as well (fault
// around, 64 KiB). Package initialisation touches every linked package:
// in the one weft binary that is the control plane's Kubernetes client,
// etcd and gRPC too, which `weft proxy` never runs. An idle sidecar held
// about 30 MiB of such pages, more than the rest of the process. They are
// clean copies of the file: Drop takes them out of the process's page
// tables (madvise MADV_DONTNEED), the page cache keeps them (shared,
// reclaimable), and the ones the process still runs are mapped back on
// their next use by a minor fault.
//
// It must not touch a page the process wrote: a mapping of the executable
// that is writable, or that holds private copies of its pages (the
// relocated read-only data of a position-independent executable), is left
// alone.
package exepages

// Result says what Drop gave back.
type Result struct {
	Mappings int   // mappings of the executable given back
	Resident int64 // bytes of them that were resident
}

// Mapping is one read-only, private mapping of the executable.
type Mapping struct {
	Start, End uintptr
	Executable bool  // machine code (else read-only data)
	Resident   int64 // bytes in RAM (Rss)
	// Private is the bytes of private copies (Anonymous): pages the
	// process wrote before the mapping was made read-only. Drop leaves a
	// mapping with any alone, since dropping them would undo the writes.
	Private int64
}
