package config

import (
	"strings"
	"testing"
)

func TestSecurityValidation(t *testing.T) {
	base := `
listeners:
- name: in
  address: 127.0.0.1:0
  tls: %TLS%
  authz: %AUTHZ%
  virtual_hosts:
  - name: a
    domains: ["*"]
    routes: [{direct_response: {status: 200}}]
clusters:
- name: c
  endpoints: [{address: "127.0.0.1:1"}]
  tls: %CTLS%
`
	cfg := func(tlsV, authz, ctls string) string {
		return strings.NewReplacer("%TLS%", tlsV, "%AUTHZ%", authz, "%CTLS%", ctls).Replace(base)
	}
	good := cfg(`{mode: strict}`, `{default: deny, rules: [{name: r, action: allow, principals: ["spiffe://td/ns/a/*"], paths: ["/api/*", "/x"], methods: [GET], ports: [80]}]}`, `{server_ids: ["spiffe://td/ns/a/sa/b"]}`)
	c, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listeners[0].TLS.MinVersion != "1.2" || c.Listeners[0].Authz.RequestPrincipalHeader != DefaultRequestPrincipal || c.Clusters[0].TLS.Mode != "mtls" {
		t.Fatalf("defaults not applied: %+v %+v %+v", c.Listeners[0].TLS, c.Listeners[0].Authz, c.Clusters[0].TLS)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"mode":         {cfg(`{mode: on}`, `{}`, `{}`), `listeners[0].tls.mode: unknown value "on"`},
		"files":        {cfg(`{mode: strict, cert_file: a.pem}`, `{}`, `{}`), "set all of cert_file, key_file, ca_file"},
		"principal":    {cfg(`{}`, `{rules: [{name: r, action: allow, principals: ["spiffe://td/ns/*/sa/x"]}]}`, `{}`), "a wildcard is only a trailing"},
		"not spiffe":   {cfg(`{}`, `{rules: [{name: r, action: allow, principals: ["orders"]}]}`, `{}`), "must be a SPIFFE ID"},
		"action":       {cfg(`{}`, `{rules: [{name: r, action: maybe}]}`, `{}`), `action: unknown value "maybe"`},
		"no action":    {cfg(`{}`, `{rules: [{name: r}]}`, `{}`), "action (allow or deny) is required"},
		"dup name":     {cfg(`{}`, `{rules: [{name: r, action: deny}, {name: r, action: allow}]}`, `{}`), "duplicate rule name"},
		"path star":    {cfg(`{}`, `{rules: [{name: r, action: deny, paths: ["/a***b"]}]}`, `{}`), `not "***"`},
		"dry run":      {cfg(`{}`, `{dry_run: {rules: [{name: r, action: deny, ports: [0]}]}}`, `{}`), "listeners[0].authz.dry_run.rules[0].ports[0]: port 0"},
		"dry run key":  {cfg(`{}`, `{dry_run: {request_principal_header: x}}`, `{}`), `dry_run.request_principal_header: unknown field`},
		"port":         {cfg(`{}`, `{rules: [{name: r, action: deny, ports: [0]}]}`, `{}`), "port 0"},
		"server id":    {cfg(`{}`, `{}`, `{server_ids: ["https://x"]}`), "clusters[0].tls.server_ids[0]"},
		"cluster mode": {cfg(`{}`, `{}`, `{mode: tls}`), `clusters[0].tls.mode: unknown value "tls"`},
	} {
		_, err := Parse(name+".yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
