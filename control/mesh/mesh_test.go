package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

const base = `kind: Service
name: orders
namespace: shop
spec:
  versions:
    - {name: v1, endpoints: [{address: "10.0.0.1:80"}]}
    - {name: v2, endpoints: [{address: "10.0.0.2:80"}, {address: "10.0.0.3:80", weight: 3}]}
---
kind: Service
name: users
namespace: shop
spec:
  dns: {name: users.internal, port: 8080}
  hosts: [users.example]
---
kind: Sidecar
name: web-1
namespace: shop
spec:
  service: users
  outbound: 127.0.0.1:15001
  inbound: 127.0.0.1:15006
  app: 127.0.0.1:8080
`

const digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func decode(t *testing.T, docs ...string) *Mesh {
	t.Helper()
	rs, err := Decode("test.yaml", []byte(strings.Join(docs, "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	return New(rs)
}

var opts = Options{
	HasModule: func(d string) bool { return d == digest },
	ModuleURL: func(d string) string { return "http://control:7070/v1/modules/" + d },
}

func TestDecodeStrict(t *testing.T) {
	for _, c := range []struct{ in, want, at string }{
		{"kind: Service\nname: a\nspec: {endpoint: []}", `spec.endpoint: unknown field "endpoint"; known fields here: endpoints,`, "f.yaml:3:"},
		{"kind: Gateway\nname: a", `unknown kind "Gateway"`, "f.yaml:1:"},
		{"name: a", "kind is required", "f.yaml:1:"},
		{"kind: Service\nname: a\nextra: 1", "field extra not found", "f.yaml:1:"},
		{"kind: TrafficRule\nname: a\nspec: {routes: [{split: [{version: v1, weight: x}]}]}", `spec.routes[0].split[0].weight: want a whole number, got the string "x"`, "f.yaml:3:"},
	} {
		_, err := Decode("f.yaml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), c.at) {
			t.Errorf("%q: error %v, want one at %s saying %q", c.in, err, c.at, c.want)
		}
	}
	rs, err := Decode("f.json", []byte(`[{"kind":"service","name":"a","spec":{"endpoints":[{"address":"1.2.3.4:80"}]}}]`))
	if err != nil || len(rs) != 1 || rs[0].Kind != KindService || rs[0].Namespace != DefaultNamespace || rs[0].Service().Endpoints[0].Address != "1.2.3.4:80" {
		t.Fatalf("JSON list: %v %+v", err, rs)
	}
}

func TestValidateErrors(t *testing.T) {
	cases := []struct {
		name, doc, key, field, reason string
	}{
		{"split weights", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{split: [{version: v1, weight: 50}, {version: v2, weight: 40}]}]}",
			"TrafficRule shop/r", "spec.routes[0].split", "weights add up to 90, want 100"},
		{"unknown version", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{version: v3}]}",
			"TrafficRule shop/r", "spec.routes[0].version", `has no version "v3"`},
		{"dangling service", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: payments, routes: [{version: v1}]}",
			"TrafficRule shop/r", "spec.service", `service "payments" does not exist`},
		{"other namespace", "kind: TrafficRule\nname: r\nspec: {service: orders, routes: [{version: v1}]}",
			"TrafficRule default/r", "spec.service", "no Service default/orders"},
		{"shadowed route", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{version: v1}, {match: {prefix: /a}, version: v2}]}",
			"TrafficRule shop/r", "spec.routes[1].match", "matches every request"},
		{"same match", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{match: {prefix: /a}, version: v1}, {match: {prefix: /a}, version: v2}]}",
			"TrafficRule shop/r", "spec.routes[1].match", "the same match as spec.routes[0]"},
		{"unknown module", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + strings.Repeat("0", 64) + "}}",
			"Filter shop/f", "spec.module.sha256", "not in the registry"},
		{"log level", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, log_level: loud}",
			"Filter shop/f", "spec.log_level", `unknown value "loud"; want one of trace, debug, info, warn, error, critical`},
		{"bad digest", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: abc}}",
			"Filter shop/f", "spec.module.sha256", "64 hex digits"},
		{"empty selector", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, apply: {}}",
			"Filter shop/f", "spec.apply", "set all: true, services or nodes"},
		{"fault filter", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{version: v1, fault: {filter: nope, abort: {status: 503, percent: 10}}}]}",
			"TrafficRule shop/r", "spec.routes[0].fault.filter", `filter "nope" does not exist`},
		{"bad endpoint", "kind: Service\nname: s\nnamespace: shop\nspec: {endpoints: [{address: nohost}]}",
			"Service s", "spec.endpoints[0].address", "not host:port"},
		{"no instances", "kind: Service\nname: s\nnamespace: shop\nspec: {}",
			"Service shop/s", "spec", "no instances"},
		{"bad name", "kind: Service\nname: Bad_Name\nnamespace: shop\nspec: {endpoints: [{address: '1.1.1.1:1'}]}",
			"Service shop/Bad_Name", "name", "not a valid name"},
		{"policy ref", "kind: Policy\nname: p\nnamespace: shop\nspec: {services: [orders], allow: [{from: [ghost]}]}",
			"Policy shop/p", "spec.allow[0].from[0]", `service "ghost" does not exist`},
		{"inbound without app", "kind: Sidecar\nname: n2\nnamespace: shop\nspec: {outbound: '127.0.0.1:1', inbound: '127.0.0.1:2'}",
			"Sidecar shop/n2", "spec.app", "needs app"},
		{"duplicate host", "kind: Service\nname: s\nnamespace: shop\nspec: {endpoints: [{address: '1.1.1.1:1'}], hosts: [users.example]}",
			"Service shop/", "spec.hosts[0]", "already a host of"},
		{"singleton without apply", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, singleton: true}",
			"Filter shop/f", "spec.apply", "a singleton runs on the sidecars apply picks"},
		{"singleton direction", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, singleton: true, apply: {all: true, direction: inbound}}",
			"Filter shop/f", "spec.apply.direction", "a singleton runs on no listener"},
		{"singleton on a route", "kind: Filter\nname: svc\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, singleton: true, apply: {all: true}}\n---\n" +
			"kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{version: v1, filters: [svc]}]}",
			"TrafficRule shop/r", "spec.routes[0].filters[0]", `filter "svc" is a singleton`},
		{"stats tag regex", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, stats_tags: [{tag_name: user, regex: '_user=('}]}",
			"Filter shop/f", "spec.stats_tags[0].regex", "regex: error parsing regexp"},
		{"stats tag group", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, stats_tags: [{tag_name: user, regex: '_user=x'}]}",
			"Filter shop/f", "spec.stats_tags[0].regex", "needs a capture group"},
		{"stats tag name", "kind: Filter\nname: f\nnamespace: shop\nspec: {module: {sha256: " + digest + "}, stats_tags: [{tag_name: 'a-b', regex: '_x=(.*)'}]}",
			"Filter shop/f", "spec.stats_tags[0].tag_name", "not a Prometheus label name"},
		{"service metadata null", "kind: Service\nname: s\nnamespace: shop\nspec: {endpoints: [{address: '1.1.1.1:1'}], metadata: {filter_metadata: {ns: {k: null}}}}",
			"Service shop/s", "spec.metadata.filter_metadata", `namespace "ns": key "k": null is not a value`},
		{"version metadata", "kind: Service\nname: s\nnamespace: shop\nspec: {versions: [{name: v1, endpoints: [{address: '1.1.1.1:1'}], metadata: {filter_metadata: {'': {k: 1}}}}]}",
			"Service shop/s", "spec.versions[0].metadata.filter_metadata", "a namespace is empty"},
		{"route metadata", "kind: TrafficRule\nname: r\nnamespace: shop\nspec: {service: orders, routes: [{version: v1, metadata: {filter_metadata: {ns: {k: [1, null]}}}}]}",
			"TrafficRule shop/r", "spec.routes[0].metadata.filter_metadata", `key "k": null is not a value`},
		{"endpoint metadata", "kind: Service\nname: s\nnamespace: shop\nspec: {endpoints: [{address: '1.1.1.1:1', metadata: {filter_metadata: {ns: {k: null}}}}]}",
			"Service shop/s", "spec.endpoints[0].metadata.filter_metadata", `key "k": null is not a value`},
		{"sidecar metadata", "kind: Sidecar\nname: n2\nnamespace: shop\nspec: {outbound: '127.0.0.1:1', metadata: {filter_metadata: {ns: {k: {1: x}}}}}",
			"Sidecar shop/n2", "spec.metadata.filter_metadata", "use strings as map keys"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(decode(t, base, c.doc), opts)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("want Errors, got %v", err)
			}
			for _, e := range es {
				if strings.Contains(e.Key.String(), c.key) && e.Field == c.field && strings.Contains(e.Reason, c.reason) {
					if !strings.HasPrefix(e.Error(), "test.yaml:") {
						t.Errorf("error lacks its file and line: %s", e.Error())
					}
					return
				}
			}
			t.Fatalf("no error {%s, %s, %s} in:\n%v", c.key, c.field, c.reason, err)
		})
	}
}

func TestCompile(t *testing.T) {
	m := decode(t, base, `kind: TrafficRule
name: orders
namespace: shop
spec:
  service: orders
  routes:
    - name: canary
      match: {prefix: /api, headers: [{name: x-canary, exact: "1"}]}
      split: [{version: v1, weight: 90}, {version: v2, weight: 10}]
      mirror: {service: users, percent: 5}
      retry: {attempts: 3, on: [5xx]}
      timeout: 2s
      fault: {filter: fault, delay: {duration: 100ms, percent: 5}}
      filters: [auth]
`, `kind: Filter
name: fault
namespace: shop
spec: {module: {sha256: `+digest+`}}
`, `kind: Filter
name: auth
namespace: shop
spec: {module: {sha256: `+strings.ToUpper(digest)+`}, config: {issuer: x}}
`, `kind: Filter
name: tag
namespace: shop
spec:
  module: {sha256: `+digest+`}
  apply: {services: [users], direction: both}
`)
	out, err := Compile(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	nc := out["web-1"]
	if nc == nil || nc.Service != "shop/users" {
		t.Fatalf("web-1: %+v", nc)
	}
	// What a sidecar receives decodes to the compiled config, whether it
	// reads it as JSON (ParseJSON) or as YAML (Parse, an older sidecar).
	y := Stamp(nc.Content, "7")
	cfg, err := config.ParseJSON("web-1", y)
	if err != nil {
		t.Fatalf("the compiled config does not parse: %v\n%s", err, y)
	}
	viaYAML, err := config.Parse("web-1", y)
	if err != nil {
		t.Fatalf("the compiled config does not parse as YAML: %v\n%s", err, y)
	}
	want := *nc.Config
	want.Version = "7"
	if !reflect.DeepEqual(cfg, &want) || !reflect.DeepEqual(viaYAML, &want) {
		t.Fatalf("the config a sidecar reads differs from the compiled one:\ncompiled %+v\nJSON     %+v\nYAML     %+v", &want, cfg, viaYAML)
	}
	if cfg.Version != "7" || cfg.Node.ID != "web-1" || len(cfg.Listeners) != 2 {
		t.Fatalf("node/listeners: %+v", cfg)
	}
	out0, in := cfg.Listeners[0], cfg.Listeners[1]
	if out0.Name != "outbound" || out0.Address != "127.0.0.1:15001" || in.Address != "127.0.0.1:15006" {
		t.Fatalf("listeners: %+v %+v", out0, in)
	}
	if strings.Join(out0.Filters, ",") != "tag.shop" || strings.Join(in.Filters, ",") != "tag.shop" {
		t.Fatalf("listener filters: %v / %v", out0.Filters, in.Filters)
	}
	var orders *config.VirtualHost
	for i := range out0.VirtualHosts {
		if out0.VirtualHosts[i].Name == "orders.shop" {
			orders = &out0.VirtualHosts[i]
		}
	}
	if orders == nil || strings.Join(orders.Domains, ",") != "orders,orders.shop,orders.shop.svc,orders.shop.svc.cluster.local" {
		t.Fatalf("orders virtual host: %+v", orders)
	}
	if len(orders.Routes) != 2 || orders.Routes[1].Name != "orders.shop/default" || orders.Routes[1].Route.Cluster != "orders.shop" {
		t.Fatalf("orders routes: %+v", orders.Routes)
	}
	r := orders.Routes[0]
	if r.Name != "orders.shop/canary" || len(r.Route.WeightedClusters) != 2 ||
		r.Route.WeightedClusters[0] != (config.WeightedCluster{Cluster: "orders.shop.v1", Weight: 90}) ||
		r.Route.Mirror.Cluster != "users.shop" || r.Route.Timeout.D().String() != "2s" || r.Route.Retry.Attempts != 3 {
		t.Fatalf("canary route: %+v %+v", r, r.Route)
	}
	if strings.Join(r.Filters, ",") != "auth.shop,fault.orders.shop.canary" {
		t.Fatalf("route filters: %v", r.Filters)
	}
	filters := map[string]config.Filter{}
	for _, f := range cfg.Filters {
		filters[f.Name] = f
	}
	fault := filters["fault.orders.shop.canary"]
	var fc map[string]any
	if err := json.Unmarshal([]byte(fault.Config), &fc); err != nil || fc["delay"].(map[string]any)["duration"] != "100ms" {
		t.Fatalf("fault config %q: %v", fault.Config, err)
	}
	if a := filters["auth.shop"]; a.Module.SHA256 != digest || a.Module.URL != "http://control:7070/v1/modules/"+digest || string(a.Config) != `{"issuer":"x"}` {
		t.Fatalf("auth filter: %+v", a)
	}
	clusters := map[string]config.Cluster{}
	for _, c := range cfg.Clusters {
		clusters[c.Name] = c
	}
	if len(clusters["orders.shop"].Endpoints) != 3 || len(clusters["orders.shop.v2"].Endpoints) != 2 ||
		clusters["users.shop"].DNS == nil || clusters[LocalAppCluster].Endpoints[0].Address != "127.0.0.1:8080" {
		t.Fatalf("clusters: %+v", cfg.Clusters)
	}
	for name := range clusters {
		if svc, _, ok := ServiceOfCluster(name); ok != (name != LocalAppCluster) || (ok && !strings.HasPrefix(svc, "shop/")) {
			t.Errorf("ServiceOfCluster(%q) = %q, %v", name, svc, ok)
		}
	}
}

func TestCompileEgressAndDuplicateNode(t *testing.T) {
	m := decode(t, base, "kind: Sidecar\nname: lonely\nnamespace: shop\nspec: {outbound: '127.0.0.1:0', egress: [orders]}")
	out, err := Compile(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vh := range out["lonely"].Config.Listeners[0].VirtualHosts {
		names = append(names, vh.Name)
	}
	if strings.Join(names, ",") != "orders.shop,unknown-host" {
		t.Fatalf("egress-limited virtual hosts: %v", names)
	}
	m = decode(t, base, "kind: Sidecar\nname: web-1\nnamespace: other\nspec: {outbound: '127.0.0.1:0'}")
	if _, err := Compile(m, opts); err == nil || !strings.Contains(err.Error(), `node id "web-1" is also Sidecar other/web-1`) {
		t.Fatalf("duplicate node id: %v", err)
	}
}

func TestCloneRoundTrip(t *testing.T) {
	m := decode(t, base)
	for _, r := range m.List("") {
		c := r.Clone()
		if c.Key() != r.Key() || string(mustYAML(t, c)) != string(mustYAML(t, r)) {
			t.Fatalf("%s does not round-trip", r.Key())
		}
	}
}

func mustYAML(t *testing.T, r *Resource) []byte {
	b, err := Encode([]*Resource{r})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecode: any input decodes or fails with an error that names the
// source; what decodes round-trips through Encode and Clone (which the
// store relies on, and which panics when a resource does not) and
// validates and compiles without panicking.
func FuzzDecode(f *testing.F) {
	f.Add(base)
	f.Add("kind: TrafficRule\nname: r\nspec: {service: orders, routes: [{split: [{version: v1, weight: 100}]}]}")
	f.Add(`[{"kind":"Filter","name":"f","spec":{"module":{"sha256":"` + digest + `"},"apply":{"all":true}}}]`)
	f.Add("---\n---\nkind: Policy\nname: p\nspec: {services: [a]}")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := Decode("fuzz", []byte(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("Decode(%q): error does not name the source: %v", in, err)
			}
			return
		}
		for _, r := range rs {
			c := r.Clone() // panics when r does not round-trip
			if c.Key() != r.Key() || c.ResourceVersion != r.ResourceVersion {
				t.Fatalf("%s cloned as %s", r.Key(), c.Key())
			}
			b1, _ := Encode([]*Resource{r})
			b2, _ := Encode([]*Resource{c})
			if !bytes.Equal(b1, b2) {
				t.Fatalf("%s does not round-trip:\n%s\n%s", r.Key(), b1, b2)
			}
		}
		if b, err := Encode(rs); err != nil {
			t.Fatalf("Encode of decoded resources: %v", err)
		} else if again, err := Decode("again", b); err != nil || len(again) != len(rs) {
			t.Fatalf("Encode output %q decodes to %d resources, %v", b, len(again), err)
		}
		_, _ = Compile(New(rs), opts)
	})
}

// A typo deep in a spec is reported at its own line, with its YAML path and
// the fields allowed there (not a Go type name), with every other problem.
func TestDecodeTypoLineAndField(t *testing.T) {
	src := `# a comment, and a blank line below

kind: TrafficRule
name: reviews
spec:
  service: reviews
  routes:
    - name: canary
      splitt: [{version: v1, weight: 90}]
      timeout: 5
`
	_, err := Decode("typo.yaml", []byte(src))
	if err == nil {
		t.Fatal("typo accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`typo.yaml:9: TrafficRule default/reviews: spec.routes[0].splitt: unknown field "splitt"; known fields here: name, match, version, split`,
		`typo.yaml:10: TrafficRule default/reviews: spec.routes[0].timeout: bad duration "5"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("want %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "mesh.RuleRoute") {
		t.Errorf("a Go type name in a user's error:\n%s", msg)
	}
}

// TestPolicyAccessRules checks the Policy's endpoint rules: each problem
// is named by field, and a good policy compiles into the fronting
// sidecar's inbound authz (deny rules first, default deny with allow
// rules, from as SPIFFE IDs) with dry-run policies in authz.dry_run.
func TestPolicyAccessRules(t *testing.T) {
	sidecars := "kind: Sidecar\nname: orders-1\nnamespace: shop\nspec: {service: orders, outbound: '127.0.0.1:0', inbound: '10.0.0.1:80', app: '127.0.0.1:8080'}"
	bad := "kind: Policy\nname: p\nnamespace: shop\nspec:\n  services: [orders]\n  allow:\n" +
		"    - {name: Bad_Name, paths: [api, '/a***'], methods: [get], principals: [orders], request_principals: [''], ports: [0], headers: [{exact: x}]}\n" +
		"  deny:\n    - {name: dup}\n    - {name: dup, from: [ghost]}\n"
	err := Validate(decode(t, base, sidecars, bad), opts)
	for _, want := range []string{
		`spec.allow[0].name: "Bad_Name" is not a valid rule name`,
		`spec.allow[0].paths[0]: path "api" must start with "/"`,
		`spec.allow[0].paths[1]: path "/a***"`,
		`spec.allow[0].methods[0]: method "get": write an upper-case HTTP method`,
		`spec.allow[0].principals[0]: principal "orders" must be a SPIFFE ID`,
		`spec.allow[0].request_principals[0]: empty principal`,
		`spec.allow[0].ports[0]: port 0`,
		`spec.allow[0].headers[0].name: a header name is required`,
		`spec.deny[1].name: rule name "dup" is also spec.deny[0]'s`,
		`spec.deny[1].from[0]: service "ghost" does not exist`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}

	good := `kind: Policy
name: api
namespace: shop
spec:
  services: [orders]
  allow: [{from: [users], methods: [GET], paths: ["/api/*"]}]
  deny: [{name: admin, paths: ["/admin/**"]}]
---
kind: Policy
name: try
namespace: shop
spec: {services: [orders], dry_run: true, deny: [{paths: ["/api/beta*"]}]}`
	o := opts
	o.TrustDomain = "td"
	out, err := Compile(decode(t, base, sidecars, good), o)
	if err != nil {
		t.Fatal(err)
	}
	a := out["orders-1"].Config.Listeners[1].Authz
	if a == nil || a.Default != "deny" || len(a.Rules) != 2 || a.Rules[0].Name != "api.shop.admin" || a.Rules[0].Action != "deny" ||
		a.Rules[1].Name != "api.shop.allow0" || strings.Join(a.Rules[1].Principals, ",") != "spiffe://td/ns/shop/sa/users" {
		t.Fatalf("authz %+v", a)
	}
	if d := a.DryRun; d == nil || d.Default != "deny" || len(d.Rules) != 3 || d.Rules[1].Name != "try.shop.deny0" {
		t.Fatalf("dry run %+v", a.DryRun)
	}
}

func TestWarningsForStrictPolicyWithoutSidecars(t *testing.T) {
	policy := "kind: Policy\nname: strict\nnamespace: shop\nspec: {services: [orders, users], mtls: strict}"
	ws := Warnings(decode(t, base, policy))
	var got []string
	for _, w := range ws {
		got = append(got, w.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"Policy shop/strict: spec.services[0]: mtls is strict, but service shop/orders version v1 endpoint 10.0.0.1:80 has no sidecar",
		"service shop/orders version v2 endpoint 10.0.0.3:80 has no sidecar",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	// users is resolved by DNS and fronted by web-1's inbound: no warning.
	if len(ws) != 3 || strings.Contains(all, "users") {
		t.Errorf("warnings:\n%s", all)
	}
	if ws := Warnings(decode(t, base, strings.Replace(policy, "strict}", "permissive}", 1))); len(ws) != 0 {
		t.Errorf("a permissive policy warned: %v", ws)
	}
}

// Filter resources carry vm_id (shared VMs, as in the sidecar YAML) and
// log_level to the compiled filters; two that name one vm_id with
// different modules are refused when compiled, naming both.
func TestCompileSharedVMFiltersAndLogLevel(t *testing.T) {
	other := strings.Repeat("ab", 32)
	o := opts
	o.HasModule = func(d string) bool { return d == digest || d == other }
	filter := func(name, module, extra string) string {
		return "kind: Filter\nname: " + name + "\nnamespace: shop\nspec:\n  module: {sha256: " + module + "}\n  vm_id: shared\n  apply: {all: true}\n" + extra
	}
	m := decode(t, base, filter("a", digest, "  log_level: debug\n"), filter("b", digest, ""))
	out, err := Compile(m, o)
	if err != nil {
		t.Fatal(err)
	}
	y := Stamp(out["web-1"].Content, "1")
	cfg, err := config.ParseJSON("web-1", y)
	if err != nil {
		t.Fatalf("the compiled config does not parse: %v\n%s", err, y)
	}
	got := map[string]config.Filter{}
	for _, f := range cfg.Filters {
		got[f.Name] = f
	}
	if a, b := got["a.shop"], got["b.shop"]; a.VMID != "shared" || b.VMID != "shared" || a.IsolateVM || b.IsolateVM ||
		a.LogLevel != "debug" || b.LogLevel != "" {
		t.Fatalf("filters: %+v", cfg.Filters)
	}

	_, err = Compile(decode(t, base, filter("a", digest, ""), filter("b", other, "")), o)
	if err == nil || !strings.Contains(err.Error(), `filters "a.shop" and "b.shop" share vm_id "shared" but differ in module`) {
		t.Fatalf("err = %v", err)
	}
}

// TestCompileWasmServicesTagsMetadata: a singleton Filter becomes the
// wasm_services of the sidecars it applies to (and of no listener), stats
// tags of the filters a sidecar runs become its stats_tags (each once),
// and service, version, route and sidecar metadata land on the clusters,
// routes and listeners filters read them from.
func TestCompileWasmServicesTagsMetadata(t *testing.T) {
	tag := "  stats_tags: [{tag_name: user, regex: '(_user=([a-z]+))'}]\n"
	m := decode(t, `kind: Service
name: orders
namespace: shop
spec:
  metadata: {filter_metadata: {location: {region: eu, zone: a}}}
  versions:
    - {name: v1, endpoints: [{address: "10.0.0.1:80", metadata: {filter_metadata: {host: {rack: r7}}}}], metadata: {filter_metadata: {location: {zone: b}}}}
    - {name: v2, endpoints: [{address: "10.0.0.2:80"}]}
---
kind: TrafficRule
name: orders
namespace: shop
spec:
  service: orders
  routes:
    - {name: api, match: {prefix: /api}, version: v1, metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: required, weight: 2.5}}}}
---
kind: Sidecar
name: web-1
namespace: shop
spec:
  outbound: 127.0.0.1:15001
  metadata: {filter_metadata: {team: {name: payments}}}
---
kind: Filter
name: svc
namespace: shop
spec:
  module: {sha256: `+digest+`}
  singleton: true
  plugin_name: ""
  config: service
  apply: {nodes: [web-1]}
`+tag+`---
kind: Filter
name: tagged
namespace: shop
spec:
  module: {sha256: `+digest+`}
  apply: {all: true}
  stats_tags:
    - {tag_name: user, regex: '(_user=([a-z]+))'}
    - {tag_name: method, regex: '(_method=([A-Z]+))'}
`)
	out, err := Compile(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	y := Stamp(out["web-1"].Content, "1")
	cfg, err := config.Parse("web-1", y)
	if err != nil {
		t.Fatalf("the compiled config does not parse: %v\n%s", err, y)
	}
	if len(cfg.WasmServices) != 1 || cfg.WasmServices[0].Name != "svc.shop" || string(cfg.WasmServices[0].Config) != "service" ||
		cfg.WasmServices[0].PluginName == nil || *cfg.WasmServices[0].PluginName != "" {
		t.Errorf("wasm_services: %+v", cfg.WasmServices)
	}
	for _, f := range cfg.Filters {
		if f.Name == "svc.shop" {
			t.Errorf("the singleton is also a listener filter")
		}
	}
	if got := cfg.Listeners[0].Filters; len(got) != 1 || got[0] != "tagged.shop" {
		t.Errorf("outbound filters: %v", got)
	}
	wantTags := []config.StatsTag{{TagName: "user", Regex: "(_user=([a-z]+))"}, {TagName: "method", Regex: "(_method=([A-Z]+))"}}
	if len(cfg.StatsTags) != 2 || cfg.StatsTags[0] != wantTags[0] || cfg.StatsTags[1] != wantTags[1] {
		t.Errorf("stats_tags: %+v, want %+v", cfg.StatsTags, wantTags)
	}
	if md := cfg.Listeners[0].Metadata; md == nil || md.FilterMetadata["team"]["name"] != "payments" {
		t.Errorf("listener metadata: %+v", md)
	}
	clusters := map[string]map[string]any{}
	for _, c := range cfg.Clusters {
		if c.Metadata != nil {
			clusters[c.Name] = c.Metadata.FilterMetadata["location"]
		}
	}
	for name, want := range map[string]string{"orders.shop": "eu/a", "orders.shop.v1": "eu/b"} {
		if got := clusters[name]; got == nil || got["region"].(string)+"/"+got["zone"].(string) != want {
			t.Errorf("cluster %s metadata location = %v, want %s", name, got, want)
		}
	}
	for _, c := range cfg.Clusters {
		if c.Name == "orders.shop.v1" {
			if md := c.Endpoints[0].Metadata; md == nil || md.FilterMetadata["host"]["rack"] != "r7" {
				t.Errorf("endpoint metadata of %s: %+v", c.Name, md)
			}
		}
	}
	var api *config.Route
	for i, r := range cfg.Listeners[0].VirtualHosts[0].Routes {
		if r.Name == "orders.shop/api" {
			api = &cfg.Listeners[0].VirtualHosts[0].Routes[i]
		}
	}
	if api == nil || api.Metadata == nil || api.Metadata.FilterMetadata["envoy.filters.http.wasm"]["auth"] != "required" ||
		api.Metadata.FilterMetadata["envoy.filters.http.wasm"]["weight"] != 2.5 {
		t.Errorf("route metadata: %+v", api)
	}
	// The mesh itself is not changed by compiling (the version's metadata
	// was merged into a copy).
	if z := m.Get(Key{Kind: KindService, Namespace: "shop", Name: "orders"}).Service().Metadata.FilterMetadata["location"]["zone"]; z != "a" {
		t.Errorf("compiling changed the service's metadata: zone %v", z)
	}
}

func TestStamp(t *testing.T) {
	cfg := &config.Config{Node: config.Node{ID: "n"}, Listeners: []config.Listener{{Name: "l"}}}
	content, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Version = `4"2`
	want, _ := json.Marshal(cfg)
	if got := Stamp(content, `4"2`); !bytes.Equal(got, want) {
		t.Fatalf("Stamp = %s, want %s (json.Marshal with the version)", got, want)
	}
	if got := string(Stamp([]byte("{}"), "1")); got != `{"version":"1"}` {
		t.Fatalf("Stamp of an empty object = %s", got)
	}
}

// Sidecars of one shape are compiled once and copied; every copy is what
// compiling that Sidecar alone gives, content byte for byte.
func TestCompileSharesShapes(t *testing.T) {
	sc := func(name, ns, extra string) string {
		return "kind: Sidecar\nname: " + name + "\nnamespace: " + ns + "\nspec:\n  outbound: 127.0.0.1:0\n" + extra
	}
	o := opts
	o.TrustDomain = "weft.test"
	m := decode(t, base,
		sc("c1", "shop", ""), sc("c2", "shop", ""), sc("c3", "shop", ""),
		sc("n1", "shop", ""), // picked by name by a filter below
		sc("o1", "other", ""), sc("o2", "other", ""),
		sc("w1", "shop", "  service: users\n  inbound: 127.0.0.1:7001\n  app: 127.0.0.1:8001\n"),
		sc("w2", "shop", "  service: users\n  inbound: 127.0.0.1:7001\n  app: 127.0.0.1:8001\n"),
		"kind: Filter\nname: pick\nnamespace: shop\nspec:\n  module: {sha256: "+digest+"}\n  apply: {nodes: [n1]}\n")
	out, err := Compile(m, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 9 { // with base's web-1
		t.Fatalf("%d nodes compiled, want 9", len(out))
	}
	for _, r := range m.List(KindSidecar) {
		alone, errs := compileNode(m, o, r, r.Name)
		if errs != nil {
			t.Fatal(errs)
		}
		got := out[r.Name]
		if !bytes.Equal(got.Content, alone.Content) || !reflect.DeepEqual(got.Config, alone.Config) || got.Service != alone.Service {
			t.Errorf("%s: compiled with its shape:\n%s\nalone:\n%s", r.Name, got.Content, alone.Content)
		}
	}
	if len(out["n1"].Config.Filters) != 1 || len(out["c1"].Config.Filters) != 0 {
		t.Errorf("the filter picking n1 by name: n1 has %d filters, c1 %d", len(out["n1"].Config.Filters), len(out["c1"].Config.Filters))
	}
}
