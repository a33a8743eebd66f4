package cluster

import (
	"slices"
	"strconv"
)

// ringHash is consistent hashing on a ring of virtual nodes: each endpoint
// owns points in proportion to its weight; a key goes to the owner of the
// first point at or after it (binary search). Removing one of N endpoints
// moves only the keys it owned (about 1/N). An unusable endpoint's points
// are walked past rather than removed, so a health flap moves only that
// endpoint's keys. Requests without a key are spread at random.
type ringHash struct{}

// Ring size: about ringPointsPerEndpoint points per endpoint of average
// weight, at least minRingSize and at most maxRingSize in all.
const (
	minRingSize           = 1024
	ringPointsPerEndpoint = 160
	maxRingSize           = 1 << 20
)

// ring is the compiled ring of one membership.
type ring struct {
	hashes []uint64 // sorted
	owners []int32  // owners[i] indexes set.endpoints
}

func (ringHash) compile(set *endpointSet) {
	set.ring = buildRing(set.endpoints)
}

func (ringHash) prepare(*view) {}

func (ringHash) pick(v *view, key uint64, hasKey bool, exclude *Endpoint) *Endpoint {
	r := v.set.ring
	if !hasKey || r == nil || len(r.hashes) == 0 {
		return v.weighted(exclude, nil)
	}
	n := len(r.hashes)
	i := r.search(key)
	eps := v.set.endpoints
	for range n {
		if i == n {
			i = 0
		}
		e := eps[r.owners[i]]
		if e != exclude && (v.panic || e.usable()) {
			return e
		}
		i++
	}
	// Nothing usable on the ring besides exclude (the view is being
	// rebuilt, or exclude is the only host).
	return v.weighted(exclude, nil)
}

// search returns the index of the first point >= key (n when none).
func (r *ring) search(key uint64) int {
	lo, hi := 0, len(r.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func buildRing(eps []*Endpoint) *ring {
	if len(eps) == 0 {
		return &ring{}
	}
	var total uint64
	for _, e := range eps {
		total += uint64(e.weight)
	}
	size := uint64(min(max(minRingSize, ringPointsPerEndpoint*len(eps)), maxRingSize))
	type point struct {
		h     uint64
		owner int32
	}
	pts := make([]point, 0, size+uint64(len(eps)))
	buf := make([]byte, 0, 64)
	for i, e := range eps {
		// Points are named "address_n": the same address gets the same
		// points in every sidecar and every membership.
		vn := max(1, (uint64(e.weight)*size+total/2)/total)
		for n := range vn {
			buf = append(buf[:0], e.addr...)
			buf = append(buf, '_')
			buf = strconv.AppendUint(buf, n, 10)
			pts = append(pts, point{hash64(buf), int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.owner - b.owner)
	})
	r := &ring{hashes: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for i, p := range pts {
		r.hashes[i], r.owners[i] = p.h, p.owner
	}
	return r
}
