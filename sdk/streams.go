package sdk

// streamTable maps stream context ids to the VM's live streams. Every
// callback looks its stream up and every stream is added and removed once;
// a Go map costs a guest a hash, and its insert and delete cost more than
// the rest of a no-op callback. A VM has a handful of live streams and the
// host numbers them in order, so a direct-mapped array finds nearly all of
// them; the rare stream whose slot is taken goes to a map.
type streamTable struct {
	slots [streamSlots]*Stream
	more  map[uint32]*Stream
}

const streamSlots = 64

func (t *streamTable) get(id uint32) *Stream {
	if s := t.slots[id%streamSlots]; s != nil && s.id == id {
		return s
	}
	if len(t.more) == 0 {
		return nil
	}
	return t.more[id]
}

func (t *streamTable) put(s *Stream) {
	i := s.id % streamSlots
	if old := t.slots[i]; old == nil || old.id == s.id {
		t.slots[i] = s
		delete(t.more, s.id)
		return
	}
	if t.more == nil {
		t.more = make(map[uint32]*Stream)
	}
	t.more[s.id] = s
}

func (t *streamTable) remove(id uint32) {
	i := id % streamSlots
	if s := t.slots[i]; s != nil && s.id == id {
		t.slots[i] = nil
		return
	}
	delete(t.more, id)
}

// len is the number of live streams.
func (t *streamTable) len() int {
	n := len(t.more)
	for _, s := range t.slots {
		if s != nil {
			n++
		}
	}
	return n
}
