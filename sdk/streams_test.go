package sdk

import "testing"

// TestStreamTable: streams whose slots collide go to the map and are found,
// replaced and removed like the others, in any order.
func TestStreamTable(t *testing.T) {
	var tb streamTable
	ids := []uint32{1, 2, 1 + streamSlots, 1 + 2*streamSlots, 3, 2 + streamSlots}
	for _, id := range ids {
		tb.put(&Stream{id: id})
	}
	if n := tb.len(); n != len(ids) {
		t.Fatalf("len %d, want %d", n, len(ids))
	}
	for _, id := range ids {
		if s := tb.get(id); s == nil || s.id != id {
			t.Errorf("get(%d) = %v", id, s)
		}
	}
	if s := tb.get(4); s != nil {
		t.Errorf("get(4) = stream %d, want none", s.id)
	}
	again := &Stream{id: 1 + streamSlots}
	tb.put(again)
	if tb.get(1+streamSlots) != again || tb.len() != len(ids) {
		t.Error("put of a live id did not replace it")
	}
	for i, id := range []uint32{1, 1 + 2*streamSlots, 2, 3, 2 + streamSlots, 1 + streamSlots} {
		tb.remove(id)
		if s := tb.get(id); s != nil {
			t.Errorf("get(%d) after remove = stream %d", id, s.id)
		}
		if n := tb.len(); n != len(ids)-i-1 {
			t.Errorf("after removing %d: len %d, want %d", id, n, len(ids)-i-1)
		}
	}
	tb.remove(99) // absent: nothing happens
}
