package sdk

import "testing"

// TestStreamTable: streams whose entries collide get records in the map
// and are found and removed like the others, in any order; a freed entry
// is reused.
func TestStreamTable(t *testing.T) {
	var tb streamTable
	ids := []uint32{1, 2, 1 + streamSlots, 1 + 2*streamSlots, 3, 2 + streamSlots}
	recs := map[uint32]*streamRec{}
	for _, id := range ids {
		r, slot := tb.add(id)
		r.s, r.id = &Stream{id: id, slot: slot}, id
		recs[id] = r
		if want := id % streamSlots; (id < streamSlots) != (slot == want) || id >= streamSlots && slot != overflowSlot {
			t.Errorf("stream %d: slot %d", id, slot)
		}
	}
	if n := tb.len(); n != len(ids) {
		t.Fatalf("len %d, want %d", n, len(ids))
	}
	for _, id := range ids {
		r := tb.get(id)
		if r == nil || r != recs[id] || r.id != id {
			t.Errorf("get(%d) = %v", id, r)
		}
		if at := tb.at(r.s.slot, id); at != r {
			t.Errorf("at(%d, %d) = %v, want %v", r.s.slot, id, at, r)
		}
	}
	if r := tb.get(4); r != nil {
		t.Errorf("get(4) = stream %d, want none", r.id)
	}
	for i, id := range []uint32{1, 1 + 2*streamSlots, 2, 3, 2 + streamSlots, 1 + streamSlots} {
		tb.remove(tb.get(id))
		if r := tb.get(id); r != nil {
			t.Errorf("get(%d) after remove = stream %d", id, r.id)
		}
		if n := tb.len(); n != len(ids)-i-1 {
			t.Errorf("after removing %d: len %d, want %d", id, n, len(ids)-i-1)
		}
	}
	if _, slot := tb.add(1 + streamSlots); slot != 1 {
		t.Errorf("a freed entry was not reused: slot %d", slot)
	}
}
