package cluster

import (
	"fmt"
	"math"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// checkShare fails when an endpoint's share of n picks is further than
// 5 standard deviations (binomial) from its weight share.
func checkShare(t *testing.T, got map[string]int, ws []int, n int) {
	t.Helper()
	total := 0
	for _, w := range ws {
		total += w
	}
	for i, w := range ws {
		addr := fmt.Sprintf("127.0.0.1:%d", i+1)
		p := float64(w) / float64(total)
		mean := p * float64(n)
		sd := math.Sqrt(float64(n) * p * (1 - p))
		if d := math.Abs(float64(got[addr]) - mean); d > 5*sd+1 {
			t.Errorf("%s (weight %d): %d picks, want %.0f ± %.0f", addr, w, got[addr], mean, 5*sd)
		}
	}
}

func TestWeightedDistribution(t *testing.T) {
	for _, lb := range []string{"random", "least_request", "ring_hash"} {
		for _, ws := range [][]int{{1, 1, 1}, {5, 1, 1}, {1, 2, 3, 4}, {50, 1}} {
			t.Run(fmt.Sprint(lb, ws), func(t *testing.T) {
				c := start(t, config.Cluster{Name: "w", LB: lb, Endpoints: weighted(ws...)}, Options{})
				const n = 20000
				checkShare(t, picks(c, n), ws, n)
			})
		}
	}
}

func TestRandomExclude(t *testing.T) {
	for _, lb := range []string{"random", "least_request", "ring_hash"} {
		t.Run(lb, func(t *testing.T) {
			// The excluded endpoint holds nearly all the weight.
			c := start(t, config.Cluster{Name: "x", LB: lb, Endpoints: weighted(1000, 1, 1)}, Options{})
			heavy := endpointByAddr(c, "127.0.0.1:1")
			seen := map[string]int{}
			for range 2000 {
				e := c.Pick(0, false, heavy)
				if e == heavy {
					t.Fatal("picked the excluded endpoint")
				}
				seen[e.Address()]++
			}
			if seen["127.0.0.1:2"] < 700 || seen["127.0.0.1:3"] < 700 {
				t.Fatalf("others not shared: %v", seen)
			}
		})
	}
}

func BenchmarkPickRandom(b *testing.B) {
	c := start(b, config.Cluster{Name: "r", LB: "random", Endpoints: weighted(5, 1, 1, 3, 2, 8, 1, 1)}, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if c.Pick(0, false, nil) == nil {
			b.Fatal("nil")
		}
	}
}
