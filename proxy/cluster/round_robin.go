package cluster

import "sync/atomic"

// roundRobin is smooth weighted round robin (nginx's algorithm): with
// weights 5:1:1 the order is a a b a c a a, spreading the heavy endpoint
// instead of sending it five in a row.
//
// The schedule is computed once per view (when membership, health or
// ejection changes), so a pick is one atomic add and an index: no lock is
// shared by the requests. BenchmarkPickRoundRobinLocked measures the
// textbook version under a per-cluster mutex for comparison.
type roundRobin struct {
	next atomic.Uint64
}

// maxSchedule bounds the schedule length. When the weights (divided by
// their greatest common divisor) add up to more, they are scaled down to
// fit, each keeping at least 1.
const maxSchedule = 4096

func (*roundRobin) compile(*endpointSet) {}

func (*roundRobin) prepare(v *view) {
	v.schedule = smoothSchedule(v.hosts)
}

func (r *roundRobin) pick(v *view, _ uint64, _ bool, exclude *Endpoint) *Endpoint {
	n := r.next.Add(1) - 1
	if v.schedule == nil {
		hosts := v.hosts
		e := hosts[n%uint64(len(hosts))]
		if e == exclude {
			e = hosts[(n+1)%uint64(len(hosts))]
		}
		return e
	}
	s := v.schedule
	l := uint64(len(s))
	e := s[n%l]
	// The next entries differ from exclude unless it holds every slot,
	// which cannot happen with two or more hosts of weight >= 1.
	for i := uint64(1); e == exclude && i < l; i++ {
		e = s[(n+i)%l]
	}
	return e
}

// smoothSchedule returns one period of smooth weighted round robin over
// hosts, or nil when all weights are equal (plain rotation is the same).
func smoothSchedule(hosts []*Endpoint) []*Endpoint {
	if len(hosts) < 2 {
		return nil
	}
	w := make([]uint64, len(hosts))
	g := uint64(0)
	equal := true
	for i, e := range hosts {
		w[i] = uint64(e.weight)
		g = gcd(g, w[i])
		equal = equal && w[i] == w[0]
	}
	if equal {
		return nil
	}
	var sum uint64
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	limit := uint64(max(maxSchedule, len(hosts)))
	if sum > limit {
		// Scale down so the period fits; rounding keeps ratios within
		// one part in limit/len(hosts).
		scaled := uint64(0)
		for i := range w {
			w[i] = max(1, w[i]*limit/sum)
			scaled += w[i]
		}
		sum = scaled
	}
	cur := make([]int64, len(hosts))
	out := make([]*Endpoint, 0, sum)
	for range sum {
		best := 0
		for i := range cur {
			cur[i] += int64(w[i])
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(sum)
		out = append(out, hosts[best])
	}
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
