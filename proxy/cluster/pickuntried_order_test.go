package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// PickUntried's order of resort, followed draw by draw through smooth
// round robin (deterministic: a fresh cluster's rotation starts at slot
// 0 and each draw takes one slot). Weights 1:5:1:5:1 give the period
// b d a b d c b d e b d b d; b and d, tried, hold ten slots of thirteen.
func TestPickUntriedReselectsThenWalksHostOrder(t *testing.T) {
	// at is a fresh cluster whose next draw takes slot m.
	at := func(m int) (*Cluster, map[string]*Endpoint) {
		c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(1, 5, 1, 5, 1)}, Options{})
		var period strings.Builder
		for _, e := range c.view.Load().schedule {
			period.WriteString(letter(e))
		}
		if got := period.String(); got != "bdabdcbdebdbd" {
			t.Fatalf("period %s, want bdabdcbdebdbd", got)
		}
		eps := map[string]*Endpoint{}
		for _, e := range c.view.Load().set.endpoints {
			eps[letter(e)] = e
		}
		for range m {
			c.Pick(0, false, nil)
		}
		return c, eps
	}
	tests := []struct {
		slot  int
		tried string // the last is the one a retry avoids first
		want  string
		why   string
	}{
		// Slot 0 is b (tried), so the balancer draws again: slot 1 is d
		// (tried), slot 2 a. Without the draws again the walk in host
		// order after b would give c.
		{0, "bd", "a", "two draws again reach a"},
		// Slot 1 is d, then a, b and d again: three draws again all land
		// on tried endpoints, and the walk in host order starts after the
		// balancer's first choice, d: e. A fourth draw would take slot 5,
		// c; a walk from the first host, c as well.
		{1, "bda", "e", "after three draws again, the host after d"},
	}
	for _, tc := range tests {
		c, eps := at(tc.slot)
		var tried []*Endpoint
		for _, l := range tc.tried {
			tried = append(tried, eps[string(l)])
		}
		if got := c.PickUntried(0, false, tried); name(got) != tc.want {
			t.Errorf("slot %d, tried %s: got %s, want %s (%s)", tc.slot, tc.tried, name(got), tc.want, tc.why)
		}
	}
}

// A health change stores the endpoint's flag and then publishes a new
// view; a pick between the two can have the ring answer an endpoint the
// view does not hold yet (ring_hash reads the flag, not the view). When
// that answer and every draw again were tried, the walk in host order
// has no position to start from: it starts before the first host and
// must look at every host, the first included.
func TestPickUntriedWalksEveryHostWhenTheChoiceIsNotInTheView(t *testing.T) {
	c := start(t, config.Cluster{Name: "rh", LB: "ring_hash", Endpoints: weighted(1, 1, 1)}, Options{})
	eps := c.view.Load().set.endpoints
	a, b, cc := eps[0], eps[1], eps[2]
	c.setHealth(a, false, errors.New("test"))
	if hosts := c.view.Load().hosts; len(hosts) != 2 || hosts[0] != b || hosts[1] != cc {
		t.Fatalf("view after a went unhealthy: %v", hosts)
	}
	// a recovers: its flag is stored, the view not yet rebuilt.
	a.unhealthy.Store(false)
	// A key whose ring walk meets a, then c (so draws again alternate
	// between the two tried endpoints) before b.
	key, found := uint64(0), false
	for k := range uint64(100000) {
		key = k * 0x9e3779b97f4a7c15
		if c.Pick(key, true, nil) == a && c.Pick(key, true, a) == cc {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("no key whose ring walk is a then c")
	}
	if got := c.PickUntried(key, true, []*Endpoint{a, cc}); got != b {
		t.Fatalf("tried a and c: got %s, want b, the only untried host", name(got))
	}
}

// name spells an endpoint of weighted() or nil.
func name(e *Endpoint) string {
	if e == nil {
		return "nil"
	}
	return letter(e)
}
