package sdk

// In a Go guest an allocation costs hundreds of nanoseconds (measured under
// wazero: 0.3–1.6 µs for 32 bytes, with or without the collector), as much
// as a whole callback the host makes, and allocation drives the collector
// (every 4 MB: a cycle whose write barriers slow everything while it
// marks). The SDK makes the allocations it must per stream from slabs: a
// value handed out is never reused (its slab stays alive while anything
// points into it), so nothing changes for code that keeps it. A stream
// allocates 12 bytes of the SDK's own (its Stream handle).

// slabStreams is how many Stream handles one allocation makes (a handle
// is 12 bytes without pointers; what else a stream needs is in a reused
// record, streamRec): 12 KiB, so the guest's allocator runs once per
// thousand streams (with 256 a slab's allocation was 2.5% of a stream).
const slabStreams = 1024

var streamSlab []Stream

// newStream returns a fresh Stream for context id of root, whose record is
// at slot.
func newStream(id, root, slot uint32) *Stream {
	if len(streamSlab) == 0 {
		streamSlab = make([]Stream, slabStreams)
	}
	s := &streamSlab[0]
	streamSlab = streamSlab[1:]
	s.id, s.root, s.slot = id, root, slot
	return s
}

// Buffers for the host (proxy_on_memory_allocate: the bytes of a header, a
// property, a body the host returns) up to hostSmall bytes come from
// hostChunk-byte slabs, 8-byte aligned; larger ones are allocated alone.
const (
	hostSmall = 256
	hostChunk = 4096
)

var hostSlab []byte

// hostBuffer returns size bytes (at least 1) for the host to fill.
func hostBuffer(size uint32) *byte {
	n := max(int(size), 1)
	if n > hostSmall {
		b := make([]byte, n)
		return &b[0]
	}
	aligned := (n + 7) &^ 7
	if len(hostSlab) < aligned {
		hostSlab = make([]byte, hostChunk)
	}
	p := &hostSlab[0]
	hostSlab = hostSlab[aligned:]
	return p
}
