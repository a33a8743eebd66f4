package main

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/plugins/internal/e2e"
	"github.com/weftmesh/weft/sdk/filtertest"
)

// TestProxyEndToEnd runs the auth filter in a real Weft proxy with the key
// set fetched from a real JWKS server through the proxy's own cluster.
func TestProxyEndToEnd(t *testing.T) {
	idp := &jwksServer{doc: jwksJSON(t)}
	idpUp := e2e.StartUpstream(t, "idp", idp.serve)
	app := e2e.StartUpstream(t, "app", nil)
	module := e2e.WriteModule(t, "auth", filtertest.BuildGo(t, "./plugins/auth"))
	_, url := e2e.StartProxy(t, `
listeners:
  - name: in
    address: 127.0.0.1:0
    filters: [auth]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: app}
clusters:
  - name: app
    endpoints: [{address: "{{app}}"}]
  - name: idp
    endpoints: [{address: "{{idp}}"}]
filters:
  - name: auth
    module: {path: "{{module}}"}
    pool_size: 1
    callback_timeout: 5s
    config:
      jwt:
        issuer: https://idp.test
        audiences: [api]
        remote_jwks: {cluster: idp, path: /keys, refresh: 1h}
        claims_to_headers: [{claim: sub, header: x-user}]
`, map[string]string{"app": app.Addr, "idp": idpUp.Addr, "module": module}, "in")
	var c e2e.Client
	defer c.Close()
	good := "Bearer " + sign(t, "RS256", "rsa1", std())
	for i := 0; i < 10; i++ {
		r := c.Get(t, url+"/orders", "Authorization", good, "x-user", "spoofed")
		if r.Status != 200 || r.Body != "app" {
			t.Fatalf("request %d: %d %q", i, r.Status, r.Body)
		}
	}
	last := app.Last()
	if last.Headers["x-user"] != "user-1" || last.Headers["authorization"] != "" {
		t.Errorf("upstream saw x-user %q authorization %q", last.Headers["x-user"], last.Headers["authorization"])
	}
	r := c.Get(t, url+"/orders")
	if r.Status != 401 || !strings.HasPrefix(r.Headers["www-authenticate"], `Bearer realm="weft"`) {
		t.Errorf("no token: %d %q", r.Status, r.Headers["www-authenticate"])
	}
	r = c.Get(t, url+"/orders", "Authorization", "Bearer "+sign(t, "RS256", "rsa1", std(), rsaKey2))
	if r.Status != 401 || !strings.Contains(r.Headers["www-authenticate"], "bad signature") {
		t.Errorf("bad signature: %d %q", r.Status, r.Headers["www-authenticate"])
	}
	if len(app.Seen()) != 10 {
		t.Errorf("upstream saw %d requests, want the 10 authenticated ones", len(app.Seen()))
	}
	if n := idp.fetches(); n != 1 {
		t.Errorf("JWKS fetched %d times for 12 requests", n)
	}
}
