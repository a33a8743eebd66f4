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

// TestStreamTableFourFilters: four filters sharing a VM with 64 requests in
// flight, each request's streams taking four consecutive ids after the
// roots' (the host's order) and the oldest request ending as a new one
// starts, keep every stream in the array: none goes to the map.
func TestStreamTableFourFilters(t *testing.T) {
	const filters, inFlight = 4, 64
	var tb streamTable
	live := map[uint32]*streamRec{}
	next := uint32(filters + 1) // the roots are 1..4
	for req := 0; req < 10*inFlight; req++ {
		if req >= inFlight {
			// The oldest request in flight ends.
			old := next - inFlight*filters
			for id := old; id < old+filters; id++ {
				tb.remove(live[id])
				delete(live, id)
			}
		}
		for f := 0; f < filters; f++ {
			r, slot := tb.add(next)
			if slot == overflowSlot {
				t.Fatalf("request %d, stream %d: in the map with %d streams live", req, next, len(live))
			}
			r.s, r.id = &Stream{id: next, slot: slot}, next
			live[next] = r
			next++
		}
	}
	if n := tb.len(); n != inFlight*filters || len(tb.more) != 0 {
		t.Fatalf("len %d, %d in the map; want %d, none", tb.len(), len(tb.more), inFlight*filters)
	}
}
