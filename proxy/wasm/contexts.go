package wasm

// streamTable holds a VM's live stream contexts by id. Ids are given out
// in order, so most live streams fit a small direct-mapped array indexed by
// the id's low bits: adding, finding and removing one touches one slot
// instead of a Go map's header, hash and group (a Go map insert and delete
// per stream were a measurable part of a stream's host cost when its cache
// lines are cold, as they are between a request's callbacks). An id whose
// slot is taken by a stream still alive goes to the map. Guarded by the
// VM's mu.
type streamTable struct {
	recent [streamTableSize]*streamFilter
	more   map[uint32]*streamFilter
}

// streamTableSize is how many consecutive ids the array holds. Every
// filter of a request takes its own id, so four filters sharing a VM with
// 64 requests in flight already span 256 ids, and a request that ends late
// stretches the span further (BenchmarkGoGuestStreamLive/wat/filters=4/
// live=64/random: 1,024 slots took ~0.6 µs off a request's 2.6–3.3 µs
// host path over 256). 8 KiB of pointers per VM.
const streamTableSize = 1024

func (t *streamTable) get(id uint32) *streamFilter {
	if f := t.recent[id%streamTableSize]; f != nil && f.id == id {
		return f
	}
	return t.more[id] // a nil map reads as empty
}

func (t *streamTable) put(f *streamFilter) {
	if s := &t.recent[f.id%streamTableSize]; *s == nil {
		*s = f
		return
	}
	if t.more == nil {
		t.more = make(map[uint32]*streamFilter)
	}
	t.more[f.id] = f
}

// remove forgets f, if it is the stream of its id.
func (t *streamTable) remove(f *streamFilter) {
	if s := &t.recent[f.id%streamTableSize]; *s == f {
		*s = nil
		return
	}
	if t.more[f.id] == f {
		delete(t.more, f.id)
	}
}

// each calls fn for every stream.
func (t *streamTable) each(fn func(*streamFilter)) {
	for _, f := range t.recent {
		if f != nil {
			fn(f)
		}
	}
	for _, f := range t.more {
		fn(f)
	}
}
