package cluster

import (
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// PickUntried with nothing tried yet is Pick: the balancer's choice (a
// first try goes through it, with no endpoint to avoid).
func TestPickUntriedWithNothingTried(t *testing.T) {
	for _, lb := range []string{"round_robin", "ring_hash"} {
		c := start(t, config.Cluster{Name: "u", LB: lb, Endpoints: static("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")}, Options{})
		seen := map[*Endpoint]int{}
		for k := range uint64(300) {
			key := k * 0x9e3779b97f4a7c15
			e := c.PickUntried(key, true, nil)
			if e == nil {
				t.Fatalf("%s: nothing picked", lb)
			}
			if lb == "ring_hash" && e != c.Pick(key, true, nil) {
				t.Fatalf("%s: key %d: PickUntried %s, Pick %s", lb, k, e.Address(), c.Pick(key, true, nil).Address())
			}
			seen[e]++
		}
		if len(seen) != 3 {
			t.Fatalf("%s: %d of 3 endpoints picked", lb, len(seen))
		}
	}
}
