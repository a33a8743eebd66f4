package config

import (
	"strings"
	"testing"
	"time"
)

func TestTCPListenerValidation(t *testing.T) {
	base := `
listeners:
- name: tunnel
  address: 127.0.0.1:0
  protocol: %PROTO%
  %BODY%
clusters:
- name: app
  endpoints: [{address: "127.0.0.1:1"}]
`
	cfg := func(proto, body string) string {
		return strings.NewReplacer("%PROTO%", proto, "%BODY%", body).Replace(base)
	}
	c, err := Parse("good.yaml", []byte(cfg("tcp", `tcp: {cluster: app, connect_timeout: 250ms}
  tls: {mode: strict}
  authz: {default: deny, rules: [{name: shop, action: allow, principals: ["spiffe://td/ns/shop/*"], ports: [15006]}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if l.TCP.IdleTimeout.D() != time.Hour || l.TCP.ConnectTimeout.D() != 250*time.Millisecond || l.Protocol != "tcp" {
		t.Fatalf("tcp defaults: %+v", l.TCP)
	}
	http, err := Parse("http.yaml", []byte(cfg("http", `virtual_hosts: [{name: a, domains: ["*"], routes: [{direct_response: {status: 200}}]}]`)))
	if err != nil || http.Listeners[0].Protocol != "http" {
		t.Fatalf("http listener: %v", err)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"protocol":   {cfg("udp", `tcp: {cluster: app}`), `test.yaml:5: listeners[0].protocol: unknown value "udp"; want one of http, tcp`},
		"no tcp":     {cfg("tcp", ``), "listeners[0].tcp: a listener with protocol: tcp needs tcp: {cluster: NAME}"},
		"no cluster": {cfg("tcp", `tcp: {idle_timeout: 1s}`), "listeners[0].tcp.cluster: cluster is required"},
		"unknown":    {cfg("tcp", `tcp: {cluster: nope}`), `test.yaml:6: listeners[0].tcp.cluster: cluster "nope" is not declared under clusters (declared: "app")`},
		"vhosts":     {cfg("tcp", "tcp: {cluster: app}\n  virtual_hosts: [{name: a, domains: [\"*\"], routes: [{direct_response: {status: 200}}]}]"), "listeners[0].virtual_hosts: a tcp listener has no virtual_hosts"},
		"filters":    {cfg("tcp", "tcp: {cluster: app}\n  filters: [f]"), `listeners[0].filters[0]: filter "f" is not declared under filters`}, // network filters are allowed; they must exist
		"http authz": {cfg("tcp", "tcp: {cluster: app}\n  authz: {rules: [{name: r, action: deny, paths: [/admin]}]}"), "listeners[0].authz.rules[0].paths: a tcp listener sees no HTTP requests"},
		"tcp on http": {cfg("http", "tcp: {cluster: app}\n  virtual_hosts: [{name: a, domains: [\"*\"], routes: [{direct_response: {status: 200}}]}]"),
			"listeners[0].tcp: tcp only applies to a listener with protocol: tcp"},
	} {
		_, err := Parse("test.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
