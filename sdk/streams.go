package sdk

// streamRec is what the SDK keeps of a live stream. A VM has a handful of
// live streams and the host numbers them in order, so the records live in
// a direct-mapped array indexed by context id, reused stream after stream;
// the rare stream whose entry is taken gets a record of its own in a map.
// In a Go guest a map insert and delete cost more than the rest of a no-op
// callback, and an allocation drives the collector (every 4 MB: a cycle
// whose write barriers slow every pointer store while it marks), so a
// stream allocates nothing but its 12-byte Stream handle, which has no
// pointers. A Stream finds its record by its slot and is live while the
// record still names it.
type streamRec struct {
	s      *Stream // the stream this record holds; nil when free
	filter HTTPFilter
	kind   *filterKind // filter's callbacks (nil: no filter)
	id     uint32
	calls  int32 // pending HTTP calls dispatched from the stream
	phase  uint8
	// contextless is set on a stream the host created no context for:
	// its filter is its root's shared one (callbackNoContext).
	contextless bool
}

// streamSlots is how many consecutive context ids the table holds. A VM's
// live streams are every request in flight times the filters sharing the
// VM, each taking its own id (the host numbers them in order): four
// filters with 64 requests in flight span ~256 ids, and with 64 slots
// most streams went to the map (a map insert, delete and a 48-byte
// record allocated per stream: +1.2 µs per filter end to end,
// docs/benchmarks.md "Wasm cost, round 8"). A record is 48 bytes, so the
// table is 48 KiB of the guest's zeroed memory, touched only as far as ids
// reach.
const streamSlots = 1024

// Stream slots that are no index of streamTable.slots.
const (
	contextlessSlot = ^uint32(0)     // the one record contextless streams use
	overflowSlot    = ^uint32(0) - 1 // a record in streamTable.more
)

// streamTable holds the VM's live stream records.
type streamTable struct {
	slots [streamSlots]streamRec
	more  map[uint32]*streamRec
}

// get returns the record of live stream id.
func (t *streamTable) get(id uint32) *streamRec {
	if r := &t.slots[id%streamSlots]; r.s != nil && r.id == id {
		return r
	}
	if len(t.more) == 0 {
		return nil
	}
	return t.more[id]
}

// at returns the record at slot (a Stream's), nil if there is none.
func (t *streamTable) at(slot, id uint32) *streamRec {
	switch {
	case slot < streamSlots:
		return &t.slots[slot]
	case slot == contextlessSlot:
		return &vm.contextless
	case slot == overflowSlot:
		return t.more[id]
	}
	return nil
}

// add returns a free record for stream id and its slot.
func (t *streamTable) add(id uint32) (*streamRec, uint32) {
	i := id % streamSlots
	if r := &t.slots[i]; r.s == nil {
		return r, i
	}
	if t.more == nil {
		t.more = make(map[uint32]*streamRec)
	}
	r := &streamRec{}
	t.more[id] = r
	return r, overflowSlot
}

// remove frees r, the record of live stream id.
func (t *streamTable) remove(r *streamRec) {
	if r.s.slot == overflowSlot {
		delete(t.more, r.id)
	}
	// Field by field: a whole-struct store is a typed copy (with bulk
	// write barriers while the collector marks).
	r.s, r.filter, r.kind = nil, nil, nil
}

// len is the number of live streams.
func (t *streamTable) len() int {
	n := len(t.more)
	for i := range t.slots {
		if t.slots[i].s != nil {
			n++
		}
	}
	return n
}

// newStreamRec starts a live stream for context id of root and returns its
// record and handle.
func newStreamRec(id, root uint32) (*streamRec, *Stream) {
	r, slot := vm.streams.add(id)
	s := newStream(id, root, slot)
	r.s, r.id, r.calls, r.phase, r.contextless = s, id, 0, streamRequest, false
	return r, s
}

// endStream deletes r's stream: its Stream reports ErrStreamGone from now.
func endStream(r *streamRec) { vm.streams.remove(r) }
