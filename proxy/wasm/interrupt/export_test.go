package interrupt

import "fmt"

// PlacementStats counts, for a module, what the call graph found and
// where the checks go; Instrument's own placement, verified.
type PlacementStats struct {
	Functions      int // defined functions
	LoopFirst      int // enter a loop before anything else (checked there)
	EntryChecks    int // get the check at entry (direct recursion)
	IndirectSites  int // call_indirect, return_call_indirect, call_ref
	CheckedSites   int // get the check before them
	TakenOnCycle   int // taken functions on a cycle through an indirect call (checks at their entry instead)
	TakenFunctions int // functions an indirect call can reach
}

// Placement computes the module's placement as Instrument does, checks it
// leaves no cycle without a check, and counts it.
func Placement(module []byte) (PlacementStats, error) {
	var st PlacementStats
	var secs []section
	r := reader{b: module, i: 8}
	var code []byte
	for !r.done() {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		secs = append(secs, section{id: id, body: body})
		if id == secCode {
			code = body
		}
	}
	if r.err != nil {
		return st, r.err
	}
	if code == nil {
		return st, nil // nothing to instrument: Instrument leaves it too
	}
	cr := reader{b: code}
	var codes [][]byte
	for n := cr.u32(); n > 0 && cr.err == nil; n-- {
		codes = append(codes, cr.bytes(int(cr.u32())))
	}
	g, err := buildCallGraph(secs, codes)
	if err != nil {
		return st, err
	}
	p := g.place()
	if err := verifyPlacement(g, p); err != nil {
		return st, fmt.Errorf("placement: %w", err)
	}
	n := uint32(len(g.direct))
	comp := components(n+g.classes+1, func(v uint32, visit func(uint32)) {
		if v < n {
			for _, w := range g.direct[v] {
				visit(w)
			}
			for _, c := range g.sites[v] {
				visit(n + c)
			}
			return
		}
		for f := range n {
			if g.taken[f] && (v-n == g.classes || g.class[f] == v-n) {
				visit(f)
			}
		}
	})
	st.Functions = int(n)
	for f := range n {
		st.LoopFirst += b2i(g.loopEntry[f])
		st.EntryChecks += b2i(p.entry[f])
		st.IndirectSites += len(g.sites[f])
		for _, s := range p.site[f] {
			st.CheckedSites += b2i(s)
		}

		st.TakenFunctions += b2i(g.taken[f])
		st.TakenOnCycle += b2i(g.taken[f] && comp[f] == comp[n+g.class[f]])
	}
	return st, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
