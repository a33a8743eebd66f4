package wasm

import "testing"

// TestStreamTable covers the VM's table of live streams: ids that share a
// slot of the array (a stream outliving streamTableSize newer ones) go to
// the map, and every stream is found, listed and removed exactly once.
func TestStreamTable(t *testing.T) {
	var tb streamTable
	live := map[uint32]*streamFilter{}
	add := func(id uint32) {
		f := &streamFilter{id: id}
		tb.put(f)
		live[id] = f
	}
	// 2 and 2+size share a slot; so do 3, 3+size and 3+2*size.
	for _, id := range []uint32{2, 3, 4, 2 + streamTableSize, 3 + streamTableSize, 3 + 2*streamTableSize} {
		add(id)
	}
	if len(tb.more) != 3 {
		t.Fatalf("%d streams in the map, want the 3 whose slot was taken", len(tb.more))
	}
	check := func() {
		t.Helper()
		for id, f := range live {
			if got := tb.get(id); got != f {
				t.Errorf("get(%d) = %p, want %p", id, got, f)
			}
		}
		seen := map[uint32]int{}
		tb.each(func(f *streamFilter) { seen[f.id]++ })
		if len(seen) != len(live) {
			t.Errorf("each listed %d streams, want %d", len(seen), len(live))
		}
		for id, n := range seen {
			if n != 1 || live[id] == nil {
				t.Errorf("each listed stream %d %d times (live: %t)", id, n, live[id] != nil)
			}
		}
	}
	check()
	// Removing the array's stream leaves the map's one of the same slot.
	tb.remove(live[3])
	delete(live, 3)
	if tb.get(3) != nil {
		t.Error("a removed stream is still found")
	}
	check()
	// A stream not in the table (or already removed) removes nothing.
	tb.remove(&streamFilter{id: 4})
	tb.remove(&streamFilter{id: 2 + streamTableSize})
	check()
	for id, f := range live {
		tb.remove(f)
		delete(live, id)
	}
	check()
	if tb.get(2) != nil || len(tb.more) != 0 {
		t.Errorf("streams left after removing all: get(2)=%p, %d in the map", tb.get(2), len(tb.more))
	}
	// A free slot is reused.
	add(3 + 3*streamTableSize)
	if tb.recent[3] == nil || len(tb.more) != 0 {
		t.Error("a new stream did not take its free slot")
	}
}

// TestStreamTableFourFilters: four filters sharing a VM with 64 requests in
// flight, each request's streams taking four consecutive ids after the
// roots' and the requests ending in a shuffled order within a window of
// twice as many, keep every stream in the array: none goes to the map.
func TestStreamTableFourFilters(t *testing.T) {
	const filters, inFlight = 4, 64
	var tb streamTable
	var live [][]*streamFilter // requests in flight, oldest first
	next := uint32(filters + 1)
	for req := 0; req < 20*inFlight; req++ {
		if len(live) == inFlight {
			// One of the older half ends: not always the oldest.
			i := (req * 7) % (inFlight / 2)
			for _, f := range live[i] {
				tb.remove(f)
			}
			live = append(live[:i], live[i+1:]...)
		}
		var r []*streamFilter
		for i := 0; i < filters; i++ {
			f := &streamFilter{id: next}
			next++
			tb.put(f)
			r = append(r, f)
		}
		live = append(live, r)
		if len(tb.more) != 0 {
			t.Fatalf("request %d: %d streams in the map, %d live", req, len(tb.more), len(live)*filters)
		}
	}
	for _, r := range live {
		for _, f := range r {
			if tb.get(f.id) != f {
				t.Fatalf("stream %d not found", f.id)
			}
		}
	}
}
