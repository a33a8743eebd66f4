package cluster

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// seq picks n times without a key or an exclusion and spells the result.
func seq(c *Cluster, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(letter(c.Pick(0, false, nil)))
	}
	return b.String()
}

// With equal weights there is no schedule (plain rotation), and a pick
// that lands on the excluded endpoint takes the next one in the rotation.
func TestRoundRobinEqualWeightsExcludeTakesNext(t *testing.T) {
	c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(2, 2, 2)}, Options{})
	if s := c.view.Load().schedule; s != nil {
		t.Fatalf("equal weights compiled a schedule of %d entries, want none", len(s))
	}
	if got := seq(c, 1); got != "a" {
		t.Fatalf("first pick %s, want a", got)
	}
	b, cc := endpointByAddr(c, "127.0.0.1:2"), endpointByAddr(c, "127.0.0.1:3")
	// Slot 1 is b: excluded, so c (slot 2), not a (slot 0).
	if e := c.Pick(0, false, b); e != cc {
		t.Fatalf("slot 1 with b excluded: got %s, want c", letter(e))
	}
	// Slot 2 is c: excluded, so slot 3 wraps round to a.
	if e := c.Pick(0, false, cc); letter(e) != "a" {
		t.Fatalf("slot 2 with c excluded: got %s, want a", letter(e))
	}
	if got := seq(c, 3); got != "abc" {
		t.Fatalf("rotation after the exclusions %s, want abc", got)
	}
}

// With a schedule, a pick that lands on the excluded endpoint walks
// forward (wrapping round the period) to the first other entry.
func TestRoundRobinExcludeWalksScheduleForward(t *testing.T) {
	c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(5, 1, 1)}, Options{})
	// The period is a a b a c a a.
	if got := seq(c, 3); got != "aab" {
		t.Fatalf("first picks %s, want aab", got)
	}
	a := endpointByAddr(c, "127.0.0.1:1")
	// Slot 3 is a: the next entry, slot 4, is c (slot 2 behind it is b).
	if e := c.Pick(0, false, a); letter(e) != "c" {
		t.Fatalf("slot 3 with a excluded: got %s, want c", letter(e))
	}
	if got := seq(c, 1); got != "c" {
		t.Fatalf("slot 4 %s, want c", got)
	}
	// Slot 5 is a, and so are 6, 0 and 1: the walk wraps to b at slot 2.
	if e := c.Pick(0, false, a); letter(e) != "b" {
		t.Fatalf("slot 5 with a excluded: got %s, want b", letter(e))
	}
	if got := seq(c, 8); got != "aaabacaa" {
		t.Fatalf("picks after the exclusions %s, want aaabacaa", got)
	}
}

// The schedule holds one period of the weights divided by their greatest
// common divisor, scaled down only past maxSchedule.
func TestRoundRobinScheduleLengthAndCounts(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int // entries per endpoint; nil: no schedule
	}{
		{[]int{7}, nil},
		{[]int{3, 3}, nil},
		{[]int{3, 3, 6}, []int{1, 1, 2}},
		{[]int{5, 1, 1}, []int{5, 1, 1}},
		{[]int{10, 20, 30}, []int{1, 2, 3}},
		{[]int{100, 100, 3}, []int{100, 100, 3}},
		{[]int{4000, 95, 1}, []int{4000, 95, 1}}, // sums to exactly maxSchedule
		// 2,000,000 in all, scaled by 4096/2,000,000 rounding down: 2048,
		// 2047.99 and 0.002, which is raised to 1.
		{[]int{1_000_000, 999_999, 1}, []int{2048, 2047, 1}},
		{[]int{maxWeight, 1}, []int{4095, 1}},
	}
	for _, tt := range tests {
		// Stop at the first failure: a broken size computation can make
		// the later, heavier cases huge.
		if !t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			c := start(t, config.Cluster{Name: "rr", Endpoints: weighted(tt.weights...)}, Options{})
			s := c.view.Load().schedule
			if tt.want == nil {
				if s != nil {
					t.Fatalf("schedule of %d entries, want none", len(s))
				}
				return
			}
			n := map[string]int{}
			for _, e := range s {
				n[letter(e)]++
			}
			total := 0
			for i, w := range tt.want {
				total += w
				if l := string(rune('a' + i)); n[l] != w {
					t.Errorf("%s holds %d entries, want %d (all: %v)", l, n[l], w, n)
				}
			}
			if len(s) != total {
				t.Fatalf("schedule length %d, want %d", len(s), total)
			}
		}) {
			break
		}
	}
}
