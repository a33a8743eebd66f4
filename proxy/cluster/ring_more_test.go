package cluster

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// ringOf starts a ring_hash cluster over weighted() endpoints.
func ringOf(t *testing.T, ws ...int) *Cluster {
	t.Helper()
	return start(t, config.Cluster{Name: "ring", LB: "ring_hash", Endpoints: weighted(ws...),
		HashOn: &config.HashOn{Header: "x-user"}}, Options{})
}

// The ring holds about ringPointsPerEndpoint points per endpoint (at least
// minRingSize in all), shared in proportion to weight, rounded to the
// nearest point and at least one per endpoint.
func TestRingHashPointsPerEndpoint(t *testing.T) {
	ten := make([]int, 10)
	for i := range ten {
		ten[i] = 1
	}
	tests := []struct {
		weights []int
		want    []int // points per endpoint
	}{
		{[]int{1}, []int{1024}},
		{[]int{3, 1}, []int{768, 256}},
		// 1024/3 = 341.3 and 2048/3 = 682.7: rounded, not truncated.
		{[]int{1, 2}, []int{341, 683}},
		// 1024·2/7 = 292.6, 1024·5/7 = 731.4.
		{[]int{2, 5}, []int{293, 731}},
		// 10 endpoints: 1600 points, past the minimum.
		{ten, []int{160, 160, 160, 160, 160, 160, 160, 160, 160, 160}},
		// 1024/(2^20+1) rounds to 0: raised to one point.
		{[]int{maxWeight, 1}, []int{1024, 1}},
	}
	for _, tt := range tests {
		// Stop at the first failure: a broken size computation can make
		// the later, heavier cases huge.
		if !t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			c := ringOf(t, tt.weights...)
			set := c.view.Load().set
			r := set.ring
			n := make([]int, len(set.endpoints))
			for _, o := range r.owners {
				n[o]++
			}
			total := 0
			for i, w := range tt.want {
				total += w
				if n[i] != w {
					t.Errorf("%s owns %d points, want %d", letter(set.endpoints[i]), n[i], w)
				}
			}
			if len(r.hashes) != total || len(r.owners) != total {
				t.Fatalf("ring has %d hashes and %d owners, want %d", len(r.hashes), len(r.owners), total)
			}
			for i := 1; i < len(r.hashes); i++ {
				if r.hashes[i-1] > r.hashes[i] {
					t.Fatalf("ring not sorted at %d", i)
				}
			}
		}) {
			break
		}
	}
}

// A key goes to the owner of the first point at or after it, and a key
// past the last point wraps round to the first.
func TestRingHashLookupAtAndAfterPoints(t *testing.T) {
	c := ringOf(t, 1, 1, 1)
	set := c.view.Load().set
	r, eps := set.ring, set.endpoints
	n := len(r.hashes)
	boundaries := 0
	for i, h := range r.hashes {
		if got, want := c.Pick(h, true, nil), eps[r.owners[i]]; got != want {
			t.Fatalf("key equal to point %d: got %s, want its owner %s", i, letter(got), letter(want))
		}
		next := eps[r.owners[(i+1)%n]]
		if i+1 < n && r.hashes[i+1] == h+1 {
			continue // no key strictly between
		}
		if got := c.Pick(h+1, true, nil); got != next {
			t.Fatalf("key just after point %d: got %s, want the next point's owner %s", i, letter(got), letter(next))
		}
		if next != eps[r.owners[i]] {
			boundaries++
		}
	}
	if boundaries < 100 {
		t.Fatalf("only %d points border another endpoint's: the checks above proved little", boundaries)
	}
	if r.hashes[0] > 0 {
		if got := c.Pick(0, true, nil); got != eps[r.owners[0]] {
			t.Fatalf("key 0: got %s, want the first point's owner", letter(got))
		}
	}
	if last := r.hashes[n-1]; last < ^uint64(0) {
		if got := c.Pick(^uint64(0), true, nil); got != eps[r.owners[0]] {
			t.Fatalf("key past the last point: got %s, want the first point's owner (wrap round)", letter(got))
		}
	}
	if got := r.search(r.hashes[n-1] + 1); r.hashes[n-1] < ^uint64(0) && got != n {
		t.Fatalf("search past the last point = %d, want %d", got, n)
	}
}

// An unusable owner is walked past to the next usable point's owner, in
// ring order, wrapping round; an excluded one likewise.
func TestRingHashWalksPastUnusableInRingOrder(t *testing.T) {
	c := ringOf(t, 1, 1, 1)
	set := c.view.Load().set
	r, eps := set.ring, set.endpoints
	n := len(r.hashes)
	down := eps[0]
	down.unhealthy.Store(true)
	c.rebuild()
	// The expected owner: walk forward from the point to the first one not
	// owned by down.
	after := func(i int, skip *Endpoint) *Endpoint {
		for j := range n {
			if e := eps[r.owners[(i+j)%n]]; e != skip && e != down {
				return e
			}
		}
		return nil
	}
	for i, h := range r.hashes {
		if got, want := c.Pick(h, true, nil), after(i, nil); got != want {
			t.Fatalf("point %d (owner %s): got %s, want %s", i, letter(eps[r.owners[i]]), letter(got), letter(want))
		}
		first := after(i, nil)
		if got, want := c.Pick(h, true, first), after(i, first); got != want {
			t.Fatalf("point %d excluding %s: got %s, want %s", i, letter(first), letter(got), letter(want))
		}
	}
}

// search over the cumulative weights: the host whose range holds r is the
// first with cum > r, so r equal to a boundary belongs to the next host.
func TestRandomSearchWeightRanges(t *testing.T) {
	c := start(t, config.Cluster{Name: "r", LB: "random", Endpoints: weighted(2, 3, 1)}, Options{})
	v := c.view.Load()
	// cum is 2, 5, 6: a holds 0..1, b 2..4, c 5.
	want := []string{"a", "a", "b", "b", "b", "c"}
	for r, w := range want {
		if got := letter(v.hosts[v.search(uint64(r))]); got != w {
			t.Fatalf("search(%d) is %s, want %s", r, got, w)
		}
	}
	if got := v.search(6); got != 3 {
		t.Fatalf("search(total) = %d, want 3 (past the end)", got)
	}
}

// Two addresses whose first ring points ("ADDRESS_0") have the same
// 64-bit hash, found by a parallel-collision (Pollard rho) search over
// hash64 of 16-hex-digit hosts: 4.6e9 hashes, 44 minutes of one loaded
// core.
const (
	collideA    = "49bcee69cd0fa593:80"
	collideB    = "13091510c10a4f2a:80"
	collideHash = 0x6c0f0a55d006edd8
)

// Two ring points with the same hash are ordered by their owners' places
// in the endpoint list, whatever else is on the ring: a key at that hash
// goes to the one listed first, in every sidecar that lists them alike.
func TestRingHashCollisionGoesToFirstListed(t *testing.T) {
	if hash64([]byte(collideA+"_0")) != collideHash || hash64([]byte(collideB+"_0")) != collideHash {
		t.Fatal("the colliding addresses do not collide")
	}
	for extra := 0; extra < 12; extra++ {
		var others []string
		for i := range extra {
			others = append(others, fmt.Sprintf("10.0.%d.%d:80", extra, i))
		}
		for _, order := range [][]string{
			append([]string{collideA, collideB}, others...),
			append([]string{collideB, collideA}, others...),
			append(append([]string{}, others...), collideA, collideB),
			append(append([]string{}, others...), collideB, collideA),
		} {
			c := start(t, config.Cluster{Name: "ring", LB: "ring_hash", Endpoints: static(order...),
				HashOn: &config.HashOn{Header: "x-user"}}, Options{})
			first := collideA
			for _, a := range order {
				if a == collideA || a == collideB {
					first = a
					break
				}
			}
			r := c.view.Load().set.ring
			for i := 1; i < len(r.hashes); i++ {
				if r.hashes[i-1] > r.hashes[i] || r.hashes[i-1] == r.hashes[i] && r.owners[i-1] >= r.owners[i] {
					t.Fatalf("%v: ring out of order at %d: %x/%d then %x/%d", order, i, r.hashes[i-1], r.owners[i-1], r.hashes[i], r.owners[i])
				}
			}
			if e := c.Pick(collideHash, true, nil); e == nil || e.Address() != first {
				t.Fatalf("%v: the key at the shared hash went to %v, want %s (listed first)", order, e, first)
			}
		}
	}
}
