package cluster

// leastRequest is power-of-two-choices: draw two distinct hosts in
// proportion to their weights and send to the one with fewer active
// requests per unit of weight. Ties (an idle cluster) go to the first
// draw, so without load the traffic split follows the weights.
type leastRequest struct{}

func (leastRequest) compile(*endpointSet) {}
func (leastRequest) prepare(*view)        {}

func (leastRequest) pick(v *view, _ uint64, _ bool, exclude *Endpoint) *Endpoint {
	a := v.weighted(exclude, nil)
	if len(v.hosts) < 3 && exclude != nil && a != exclude {
		return a // the only other choice
	}
	b := v.weighted(exclude, a)
	if b == exclude || b == a {
		return a
	}
	// Compare active/weight without dividing.
	la := uint64(a.active.Load()) * uint64(b.weight)
	lb := uint64(b.active.Load()) * uint64(a.weight)
	if lb < la {
		return b
	}
	return a
}
