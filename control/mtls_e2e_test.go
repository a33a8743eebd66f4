package control_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
)

// TestMTLSOnlyToEndpointsWithASidecar runs issue 19's mixed service with a
// trust domain: orders v1 behind a real sidecar (mTLS, inbound strict), v2
// a plain app with none. A caller's sidecar splits 50/50 between them and
// must reach both: mTLS to v1, plaintext to v2, with no failed request.
// The whole service (the catch-all) mixes both, and is split in two
// clusters by transport. A Policy demanding strict mTLS for orders is
// accepted with a warning naming the plain endpoint.
func TestMTLSOnlyToEndpointsWithASidecar(t *testing.T) {
	app1, app2 := meshtest.StartUpstream(t, "v1"), meshtest.StartUpstream(t, "v2")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), CA: &ca.Options{TrustDomain: "weft.test"}})
	t.Cleanup(func() { _ = cp.Close() })
	inbound := meshtest.FreeAddr(t)
	code, b := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", `kind: Service
name: orders
spec:
  versions:
    - {name: v1, endpoints: [{address: "`+inbound+`"}]}
    - {name: v2, endpoints: [{address: "`+app2.Addr+`"}]}
---
kind: TrafficRule
name: orders
spec:
  service: orders
  routes:
    - name: split
      match: {prefix: /split}
      split: [{version: v1, weight: 50}, {version: v2, weight: 50}]
---
kind: Policy
name: orders-strict
spec: {services: [orders], mtls: strict}
---
kind: Sidecar
name: orders-1
spec: {service: orders, outbound: "127.0.0.1:0", inbound: "`+inbound+`", app: "`+app1.Addr+`", admin: "off"}
---
kind: Sidecar
name: web-1
spec: {outbound: "127.0.0.1:0", admin: "off"}
`)
	var res server.WriteResult
	if code != 200 || json.Unmarshal([]byte(b), &res) != nil {
		t.Fatalf("apply: %d %s", code, b)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "Policy default/orders-strict: spec.services[0]: mtls is strict, but service default/orders version v2 endpoint "+app2.Addr+" has no sidecar") {
		t.Fatalf("warnings %q: want one naming v2's plain endpoint", res.Warnings)
	}
	// What the caller's sidecar was given: mTLS to v1 only.
	cfg := cp.Store().Node("web-1").Config
	tlsOf := map[string]bool{}
	for _, c := range cfg.Clusters {
		tlsOf[c.Name] = c.TLS != nil
	}
	want := map[string]bool{"orders.default.v1": true, "orders.default.v2": false, "orders.default~mtls": true, "orders.default~plain": false}
	for name, tls := range want {
		if got, ok := tlsOf[name]; !ok || got != tls {
			t.Errorf("cluster %s: declared %v, mTLS %v; want mTLS %v (clusters %v)", name, ok, got, tls, tlsOf)
		}
	}

	meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "orders-1", URL: cp.URL()})
	web := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "web-1", URL: cp.URL()})
	meshtest.Eventually(t, "both sidecars in sync, with certificates", func() bool {
		st := status(t, cp.URL())
		in := 0
		for _, n := range st.Nodes {
			if n.InSync {
				in++
			}
		}
		code, body, _, _ := web.Get("orders", "/split")
		return in == 2 && code == 200 && body != ""
	})

	// 200 requests each way, 4 at a time: through the split and through
	// the whole service.
	for _, path := range []string{"/split", "/"} {
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					code, body, hdr, err := web.Get("orders", path)
					key := body
					if err != nil || code != 200 {
						key = meshtest.Sprintf("FAILED %d %q %v %v", code, body, err, hdr)
					}
					mu.Lock()
					seen[key]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != 2 || seen["v1"] == 0 || seen["v2"] == 0 {
			t.Fatalf("%s: %v; want only v1 and v2, both reached, no failure", path, seen)
		}
		t.Logf("%s: %v, 0 failed", path, seen)
	}
	// v1 was reached over mTLS: its inbound is strict, so a plaintext
	// request to it is refused.
	if resp, err := meshtest.HTTP.Get("http://" + inbound + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the strict inbound answered a plaintext request")
		}
	}
}
