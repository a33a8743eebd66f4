package cluster

import "math/rand/v2"

// random picks an endpoint at random, in proportion to the weights.
type random struct{}

func (random) compile(*endpointSet) {}
func (random) prepare(*view)        {}

func (random) pick(v *view, _ uint64, _ bool, exclude *Endpoint) *Endpoint {
	return v.weighted(exclude, nil)
}

// rejectionTries bounds the redraws that skip an excluded endpoint before
// falling back to a scan; with sane weights one or two draws suffice.
const rejectionTries = 8

// weighted draws a host in proportion to weight, skipping not1 and not2
// when any other host exists. The draw uses math/rand/v2's per-thread
// generator: no lock and no allocation.
func (v *view) weighted(not1, not2 *Endpoint) *Endpoint {
	for range rejectionTries {
		e := v.hosts[v.search(rand.Uint64N(v.total))]
		if e != not1 && e != not2 {
			return e
		}
	}
	// Rare: the excluded hosts hold nearly all the weight. Draw from the
	// remaining weight and step over the excluded ranges.
	type gap struct{ start, w uint64 }
	var gaps [2]gap
	ng := 0
	for i, e := range v.hosts {
		if e == not1 || e == not2 {
			start := uint64(0)
			if i > 0 {
				start = v.cum[i-1]
			}
			gaps[ng] = gap{start, uint64(e.weight)}
			ng++
			if ng == 2 {
				break
			}
		}
	}
	rest := v.total
	for _, g := range gaps[:ng] {
		rest -= g.w
	}
	if rest == 0 {
		if not1 != nil {
			return not1
		}
		return not2
	}
	r := rand.Uint64N(rest)
	for _, g := range gaps[:ng] { // in increasing start order
		if r >= g.start {
			r += g.w
		}
	}
	return v.hosts[v.search(r)]
}

// search returns the index of the host whose weight range holds r
// (0 <= r < total): the first i with cum[i] > r.
func (v *view) search(r uint64) int {
	lo, hi := 0, len(v.cum)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if v.cum[m] > r {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}
