package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const metadataConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [meta]
    metadata:
      filter_metadata:
        team: {name: payments}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: one
            match: {prefix: /one}
            route: {cluster: up}
            metadata:
              filter_metadata:
                envoy.filters.http.wasm: {auth: cookie, weight: 2.5}
          - name: split
            match: {prefix: /split}
            route: {weighted_clusters: [{cluster: up, weight: 50}, {cluster: up-b, weight: 50}]}
          - name: other
            match: {prefix: /}
            route: {cluster: up}
filters:
  - name: meta
    module: {path: "{{metadata}}"}
clusters:
  - name: up
    endpoints:
      - address: "{{up}}"
        metadata: {filter_metadata: {host: {zone: z1}}}
    metadata:
      filter_metadata:
        location: {region: ap-northeast-1, az: ap-northeast-1a}
  - name: up-b
    endpoints: [{address: "{{up}}"}]
    metadata:
      filter_metadata:
        location: {region: ap-northeast-1, az: ap-northeast-1a}
`

// A listener filter reads the route's metadata (of the route the request
// matches, before routing), the cluster's as a map (of the route's one
// cluster; weighted clusters only once one is picked), and the listener's,
// in Envoy's encodings; a route without metadata reads NotFound. The
// cluster's metadata is read again on response headers, with the
// metadata of the endpoint that answered (upstream_host_metadata).
func TestWasmMetadataProperties(t *testing.T) {
	for _, lang := range httpGuestLanguages {
		t.Run(lang, func(t *testing.T) {
			up := testserver.Start(t, "up")
			_, url := startProxy(t, metadataConfig, map[string]string{"up": up.Addr, "metadata": guestFileIn(t, t.TempDir(), lang, "metadata")})
			cl := &fasthttp.Client{}
			for _, c := range []struct{ path, auth, weight string }{
				{"/one", "cookie", "2.5"},
				{"/two", "NOTFOUND", "NOTFOUND"},
			} {
				st, body, rh := get(t, cl, url+c.path)
				if st != 200 {
					t.Fatalf("%s: %d %q", c.path, st, body)
				}
				// Once the cluster is chosen (response headers) it reads as a map.
				if got := string(rh.Peek("x-cluster-location")); got != "az=ap-northeast-1a,region=ap-northeast-1" {
					t.Errorf("%s: response x-cluster-location = %q", c.path, got)
				}
				// And the endpoint that answered, its metadata.
				if got := string(rh.Peek("x-host-zone")); got != "z1" {
					t.Errorf("%s: response x-host-zone = %q, want z1", c.path, got)
				}
				h := &up.Last().Header
				for k, want := range map[string]string{
					"x-route-auth": c.auth, "x-route-weight": c.weight,
					// The route's one cluster is known before the filters run, as in Envoy.
					"x-cluster-location": "az=ap-northeast-1a,region=ap-northeast-1",
					"x-listener-team":    "payments",
				} {
					if got := string(h.Peek(k)); got != want {
						t.Errorf("%s: %s = %q, want %q", c.path, k, got, want)
					}
				}
			}
			// Weighted clusters: which one is not known until it is picked,
			// after the request's filters.
			st, body, rh := get(t, cl, url+"/split")
			if st != 200 {
				t.Fatalf("/split: %d %q", st, body)
			}
			if got := string(up.Last().Header.Peek("x-cluster-location")); got != "NOTFOUND" {
				t.Errorf("/split: request x-cluster-location = %q, want NOTFOUND", got)
			}
			if got := string(rh.Peek("x-cluster-location")); got != "az=ap-northeast-1a,region=ap-northeast-1" {
				t.Errorf("/split: response x-cluster-location = %q", got)
			}
		})
	}
}
