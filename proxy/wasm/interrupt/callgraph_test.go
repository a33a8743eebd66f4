package interrupt

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// graphFrom decodes a small call graph from fuzz bytes: up to 9
// functions, up to 3 signature classes, each function's class, whether
// it is taken and whether it starts with a loop, then edges: a direct call
// or an indirect call site of a class (or of any class).
func graphFrom(b []byte) *callGraph {
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	n := 1 + uint32(next()%9)
	g := &callGraph{
		direct:    make([][]uint32, n),
		sites:     make([][]uint32, n),
		class:     make([]uint32, n),
		taken:     make([]bool, n),
		loopEntry: make([]bool, n),
		classes:   1 + uint32(next()%3),
	}
	for f := range n {
		c := next()
		g.class[f] = uint32(c) % g.classes
		g.taken[f] = c&0x10 != 0
		g.loopEntry[f] = c&0x20 != 0 && c&0x40 != 0 // rarer: a quarter
	}
	for len(b) >= 2 {
		from, to := uint32(next())%n, next()
		if to&0x80 == 0 {
			g.direct[from] = append(g.direct[from], uint32(to)%n)
		} else {
			g.sites[from] = append(g.sites[from], uint32(to&0x7f)%(g.classes+1))
		}
	}
	return g
}

// bruteCheck verifies a placement on a small graph the slow way, with
// edges between functions only (an indirect site is an edge to every taken
// function its class admits): with the checked edges taken out (into a
// function checked at entry, out of a checked site) no cycle is left, and
// every check is needed (it lies on a cycle that passes no other entry
// check).
func bruteCheck(g *callGraph, p placement) error {
	n := len(g.direct)
	entryChecked := func(f int) bool { return p.entry[f] || g.loopEntry[f] }
	admits := func(c uint32, f int) bool { return g.taken[f] && (c == g.classes || g.class[f] == c) }
	// reach[i][j]: a path i → … → j of at least one edge in the graph kept.
	closure := func(keep func(from, to int, site int) bool) [][]bool {
		reach := make([][]bool, n)
		for i := range reach {
			reach[i] = make([]bool, n)
		}
		for f := range n {
			for _, w := range g.direct[f] {
				if keep(f, int(w), -1) {
					reach[f][w] = true
				}
			}
			for i, c := range g.sites[f] {
				for w := range n {
					if admits(c, w) && keep(f, w, i) {
						reach[f][w] = true
					}
				}
			}
		}
		for k := range n {
			for i := range n {
				if reach[i][k] {
					for j := range n {
						reach[i][j] = reach[i][j] || reach[k][j]
					}
				}
			}
		}
		return reach
	}
	unchecked := closure(func(from, to, site int) bool {
		if entryChecked(to) {
			return false
		}
		return site < 0 || p.site[from] == nil || !p.site[from][site]
	})
	for f := range n {
		if unchecked[f][f] {
			return fmt.Errorf("function %d is on a cycle that passes no check", f)
		}
	}
	// Needed: an entry check (not a loop's) on a cycle of direct calls
	// that enters no function starting with a loop; a site check on a
	// cycle through that site entering no function checked at entry.
	direct := closure(func(from, to, site int) bool { return site < 0 && !g.loopEntry[to] })
	for f := range n {
		if p.entry[f] && (g.loopEntry[f] || !direct[f][f]) {
			return fmt.Errorf("function %d is checked at entry but no cycle of direct calls needs it", f)
		}
	}
	open := closure(func(from, to, site int) bool { return !entryChecked(to) })
	for f := range n {
		if p.site[f] != nil && len(p.site[f]) != len(g.sites[f]) {
			return fmt.Errorf("function %d: %d site marks for %d sites", f, len(p.site[f]), len(g.sites[f]))
		}
		for i, c := range g.sites[f] {
			if p.site[f] == nil || !p.site[f][i] {
				continue
			}
			needed := false
			for w := range n {
				needed = needed || (admits(c, w) && !entryChecked(w) && (w == f || open[w][f]))
			}
			if entryChecked(f) || !needed {
				return fmt.Errorf("function %d: site %d is checked but on no cycle that needs it", f, i)
			}
		}
	}
	return nil
}

// The placement leaves no cycle without a check and adds no check that no
// cycle needs, on small graphs checked by brute force.
func FuzzPlacement(f *testing.F) {
	f.Add([]byte{2, 0, 0x10, 0x10, 0, 0x81, 1, 0x81})                // two taken functions calling each other indirectly
	f.Add([]byte{3, 1, 0x10, 0x11, 0, 0, 1, 1, 2, 0x82, 0})          // a direct cycle, a site of a class no one has
	f.Add([]byte{3, 0, 0x70, 0x10, 0x10, 0, 0x80, 1, 2, 2, 0x83, 0}) // one starts with a loop
	f.Fuzz(func(t *testing.T, b []byte) {
		g := graphFrom(b)
		if err := bruteCheck(g, g.place()); err != nil {
			t.Fatalf("%v\ngraph %+v", err, *g)
		}
	})
}

// The same on many random graphs, every run.
func TestPlacementAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2))
	for i := range 3000 {
		b := make([]byte, 2+rng.IntN(40))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		g := graphFrom(b)
		if err := bruteCheck(g, g.place()); err != nil {
			t.Fatalf("graph %d (%x): %v\n%+v", i, b, err, *g)
		}
	}
}

// verifyPlacement checks a placement on a graph of any size: with the
// checked edges taken out, the graph with a node per signature class has
// a topological order (Kahn's algorithm), so no cycle passes no check.
func verifyPlacement(g *callGraph, p placement) error {
	n := uint32(len(g.direct))
	nodes := n + g.classes + 1
	entryChecked := func(f uint32) bool { return p.entry[f] || g.loopEntry[f] }
	succ := make([][]uint32, nodes)
	for f := range n {
		for _, w := range g.direct[f] {
			if !entryChecked(w) {
				succ[f] = append(succ[f], w)
			}
		}
		for i, c := range g.sites[f] {
			if p.site[f] == nil || !p.site[f][i] {
				succ[f] = append(succ[f], n+c)
			}
		}
		if g.taken[f] && !entryChecked(f) {
			succ[n+g.class[f]] = append(succ[n+g.class[f]], f)
			if g.class[f] != g.classes {
				succ[n+g.classes] = append(succ[n+g.classes], f)
			}
		}
	}
	in := make([]int, nodes)
	for _, ws := range succ {
		for _, w := range ws {
			in[w]++
		}
	}
	var ready []uint32
	for v := range nodes {
		if in[v] == 0 {
			ready = append(ready, v)
		}
	}
	done := 0
	for len(ready) > 0 {
		v := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		done++
		for _, w := range succ[v] {
			if in[w]--; in[w] == 0 {
				ready = append(ready, w)
			}
		}
	}
	if done != int(nodes) {
		for f := range n {
			if in[f] > 0 {
				return fmt.Errorf("function %d is on or after a cycle that passes no check (%d of %d nodes ordered)", f, done, nodes)
			}
		}
		return fmt.Errorf("a cycle passes no check (%d of %d nodes ordered)", done, nodes)
	}
	return nil
}

// The scalable verifier agrees with the brute force: it refuses a
// placement with a check taken away whenever the brute force does.
func TestVerifyPlacementAgreesWithBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 6))
	refused := 0
	for i := range 2000 {
		b := make([]byte, 2+rng.IntN(40))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		g := graphFrom(b)
		p := g.place()
		if err := verifyPlacement(g, p); err != nil {
			t.Fatalf("graph %d: the placement fails the verifier: %v", i, err)
		}
		// Take one check away.
		var drops []func()
		for f := range p.entry {
			if p.entry[f] {
				drops = append(drops, func() { p.entry[f] = false })
			}
			for s := range p.site[f] {
				if p.site[f][s] {
					drops = append(drops, func() { p.site[f][s] = false })
				}
			}
		}
		if len(drops) == 0 {
			continue
		}
		drops[rng.IntN(len(drops))]()
		brute, fast := bruteCheck(g, p), verifyPlacement(g, p)
		if (brute != nil) != (fast != nil) {
			t.Fatalf("graph %d with a check taken away: brute force %v, verifier %v", i, brute, fast)
		}
		if fast != nil {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no placement with a check taken away was refused: the test checks nothing")
	}
}
