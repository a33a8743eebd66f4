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

// tlsKey: no tls and tls disabled key alike (plaintext); a tls block keys
// with its defaults filled in, so that spelling a default out changes
// nothing and a changed server ID does.
func TestTLSKey(t *testing.T) {
	if tlsKey(nil) != nil || tlsKey(&config.ClusterTLS{Mode: "disabled", ServerIDs: []string{"spiffe://td/a"}}) != nil {
		t.Fatal("plaintext keys as TLS")
	}
	k := tlsKey(&config.ClusterTLS{ServerIDs: []string{"spiffe://td/a"}})
	if k == nil || k.Mode != "mtls" || k.MinVersion != "1.2" || len(k.ServerIDs) != 1 {
		t.Fatalf("defaults: %+v", k)
	}
	if k2 := tlsKey(&config.ClusterTLS{Mode: "mtls", MinVersion: "1.3"}); k2 == nil || k2.MinVersion != "1.3" {
		t.Fatalf("set values: %+v", k2)
	}
	a := start(t, config.Cluster{Name: "k", Endpoints: static("127.0.0.1:1"), TLS: &config.ClusterTLS{ServerIDs: []string{"spiffe://td/a"}}}, Options{})
	b := start(t, config.Cluster{Name: "k", Endpoints: static("127.0.0.1:1"), TLS: &config.ClusterTLS{Mode: "mtls", MinVersion: "1.2", ServerIDs: []string{"spiffe://td/a"}}}, Options{})
	c := start(t, config.Cluster{Name: "k", Endpoints: static("127.0.0.1:1"), TLS: &config.ClusterTLS{ServerIDs: []string{"spiffe://td/b"}}}, Options{})
	if a.Key() != b.Key() || a.Key() == c.Key() {
		t.Fatalf("keys: defaults spelled out %v, another server ID %v", a.Key() == b.Key(), a.Key() != c.Key())
	}
}
