package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// indent prefixes every line of s with n spaces.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// base is a small valid config; the helpers below put one piece into it.
const baseListener = `listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: vh
        domains: ["*"]
        routes:
`

const baseClusters = `clusters:
  - name: c1
    endpoints: [{address: 127.0.0.1:8080}]
  - name: c2
    endpoints: [{address: 127.0.0.1:8081}]
`

const baseFilters = `filters:
  - name: f1
    module: {path: f1.wasm}
`

const okRoute = `- match: {prefix: /}
  route: {cluster: c1}
`

// withRoute is the base config whose only virtual host has the given routes.
func withRoute(routes string) string {
	return baseListener + indent(routes, 10) + baseClusters + baseFilters
}

// withCluster is the base config with one more cluster.
func withCluster(cluster string) string {
	return baseListener + indent(okRoute, 10) + baseClusters + indent(cluster, 2) + baseFilters
}

// grpcWebListener is the base config whose listener has grpc_web set to
// block (YAML, indented under grpc_web).
func grpcWebListener(block string) string {
	return "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    grpc_web:\n" + indent(block, 6) +
		"    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters
}

// withFilter is the base config with one more filter.
func withFilter(filter string) string {
	return baseListener + indent(okRoute, 10) + baseClusters + baseFilters + indent(filter, 2)
}

// markedLine returns the 1-based line of the line marked "#<".
func markedLine(t *testing.T, doc string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, "#<") {
			return i + 1
		}
	}
	t.Fatalf("no #< marker in:\n%s", doc)
	return 0
}

func TestParseReportsFileLineAndPath(t *testing.T) {
	cases := []struct {
		name   string
		doc    string
		path   string // "" for errors that have no field (syntax)
		reason string
	}{
		// Decoding.
		{"unknown field", withCluster("- name: c3\n  adress: 1.2.3.4:80 #<\n"), "clusters[2].adress", `unknown field "adress"; known fields here: name, endpoints, dns`},
		{"wrong type", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80, weight: heavy}] #<\n"), "clusters[2].endpoints[0].weight", `want a whole number, got the string "heavy"`},
		{"list expected", withCluster("- name: c3\n  endpoints: {address: 1.2.3.4:80} #<\n"), "clusters[2].endpoints", "want a list, got a mapping"},
		{"bad duration", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  connect_timeout: 5 #<\n"), "clusters[2].connect_timeout", `bad duration "5"`},
		{"syntax", "listeners:\n  - name: a\n  address: x #<\n", "", "did not find expected '-' indicator"},
		{"duplicate key", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  name: c4 #<\n"), "clusters[2].name", `mapping key "name" already defined at line`},

		// Names.
		{"no listeners", "clusters: []\nlisteners: [] #<\n", "listeners", "at least one listener is required"},
		{"listener name required", "listeners:\n  - address: 127.0.0.1:0 #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].name", "name is required"},
		{"duplicate listener", baseListener + indent(okRoute, 10) + "  - name: main #<\n    address: 127.0.0.1:0\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[1].name", `duplicate listener name "main": listeners[0].name (line 2) already uses it`},
		{"duplicate cluster", withCluster("- name: c2 #<\n  endpoints: [{address: 1.2.3.4:80}]\n"), "clusters[2].name", `duplicate cluster name "c2"`},
		{"duplicate filter", withFilter("- name: f1 #<\n  module: {path: x.wasm}\n"), "filters[1].name", `duplicate filter name "f1"`},
		{"duplicate route name", withRoute("- name: r\n  route: {cluster: c1}\n- name: r #<\n  route: {cluster: c2}\n"), "listeners[0].virtual_hosts[0].routes[1].name", `duplicate route name "r"`},
		{"duplicate virtual host", baseListener + indent(okRoute, 10) + "      - name: vh #<\n        domains: [a.local]\n        routes: [{route: {cluster: c1}}]\n" + baseClusters, "listeners[0].virtual_hosts[1].name", `duplicate virtual host name "vh"`},
		{"duplicate domain across virtual hosts", baseListener + indent(okRoute, 10) + "      - name: vh2\n        domains: [a.local, '*'] #<\n        routes: [{route: {cluster: c1}}]\n" + baseClusters, "listeners[0].virtual_hosts[1].domains[1]", `duplicate domain "*": listeners[0].virtual_hosts[0].domains[0]`},
		{"duplicate domain ignores case", baseListener + indent(okRoute, 10) + "      - name: vh2\n        domains:\n          - API.local\n          - api.LOCAL #<\n        routes: [{route: {cluster: c1}}]\n" + baseClusters, "listeners[0].virtual_hosts[1].domains[1]", `duplicate domain "api.local"`},
		{"bad wildcard", baseListener + indent(okRoute, 10) + "      - name: vh2\n        domains:\n          - a.*.local #<\n        routes: [{route: {cluster: c1}}]\n" + baseClusters, "listeners[0].virtual_hosts[1].domains[0]", `domain "a.*.local": a wildcard is "*" alone`},

		// Addresses.
		{"listener address", "listeners:\n  - name: l\n    address: localhost #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].address", `address "localhost" is not host:port`},
		{"endpoint port", withCluster("- name: c3\n  endpoints:\n    - address: 10.0.0.1:99999 #<\n"), "clusters[2].endpoints[0].address", `address "10.0.0.1:99999": port "99999" is not a number from 1 to 65535`},
		{"endpoint port zero", withCluster("- name: c3\n  endpoints:\n    - address: 10.0.0.1:0 #<\n"), "clusters[2].endpoints[0].address", `address "10.0.0.1:0": port "0"`},
		{"admin address", "admin: {address: nope} #<\n" + withRoute(okRoute), "admin.address", "not host:port"},

		// gRPC-Web.
		{"grpc_web origins required", grpcWebListener("cors: {max_age: 1m} #<"), "listeners[0].grpc_web.cors.allow_origins", `at least one origin is required ("*" allows any)`},
		{"grpc_web origin form", grpcWebListener("cors:\n  allow_origins: [app.example] #<"), "listeners[0].grpc_web.cors.allow_origins[0]", `"app.example" is not an origin: want scheme://host[:port]`},
		{"grpc_web origin path", grpcWebListener("cors:\n  allow_origins: ['https://a.example/x'] #<"), "listeners[0].grpc_web.cors.allow_origins[0]", `is not an origin`},
		{"grpc_web any origin with credentials", grpcWebListener("cors:\n  allow_credentials: true\n  allow_origins: ['*'] #<"), "listeners[0].grpc_web.cors.allow_origins[0]", `"*" cannot be used with allow_credentials`},
		{"grpc_web expose header", grpcWebListener("cors:\n  allow_origins: ['*']\n  expose_headers: ['x y'] #<"), "listeners[0].grpc_web.cors.expose_headers[0]", "cannot have"},
		{"grpc_web on tcp", "listeners:\n  - name: t\n    address: 127.0.0.1:0\n    protocol: tcp\n    tcp: {cluster: c1}\n    grpc_web: {} #<\n" + baseClusters, "listeners[0].grpc_web", "gRPC-Web needs an http listener, not protocol tcp"},

		// Matching.
		{"prefix and path", withRoute("- match: {prefix: /a, path: /b} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match", "set only one of prefix, path, regex"},
		{"prefix slash", withRoute("- match: {prefix: a} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.prefix", `must start with "/"`},
		{"regex compiles", withRoute("- match: {regex: '/a(b'} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.regex", "does not compile (Go RE2 syntax"},
		{"regex RE2 only", withRoute("- match: {regex: '/(a)\\1'} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.regex", "Go RE2 syntax"},
		{"method case", withRoute("- match:\n    methods: [GET, post] #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.methods[1]", `write "POST"`},
		{"header matcher none", withRoute("- match:\n    headers:\n      - name: x-a #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.headers[0]", "set exactly one of exact, prefix, regex, present, absent (found 0)"},
		{"header matcher two", withRoute("- match:\n    headers:\n      - {name: x-a, exact: b, present: true} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.headers[0]", "(found 2)"},
		{"header matcher name", withRoute("- match:\n    headers:\n      - {name: 'x a', exact: b} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.headers[0].name", "cannot have"},
		{"query regex", withRoute("- match:\n    query:\n      - {name: v, regex: '(?<=a)b'} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.query[0].regex", "Go RE2"},
		{"cookie name", withRoute("- match:\n    cookies:\n      - {present: true} #<\n  route: {cluster: c1}\n"), "listeners[0].virtual_hosts[0].routes[0].match.cookies[0].name", "name is required"},

		// Actions.
		{"two actions", withRoute("- match: {prefix: /} #<\n  route: {cluster: c1}\n  direct_response: {status: 200}\n"), "listeners[0].virtual_hosts[0].routes[0]", "set exactly one of route, redirect, direct_response (found 2)"},
		{"no action", withRoute("- match: {prefix: /} #<\n"), "listeners[0].virtual_hosts[0].routes[0]", "(found 0)"},
		{"cluster and split", withRoute("- route: #<\n    cluster: c1\n    weighted_clusters: [{cluster: c2, weight: 100}]\n"), "listeners[0].virtual_hosts[0].routes[0].route", "set cluster or weighted_clusters, not both"},
		{"neither cluster nor split", withRoute("- route: {timeout: 1s} #<\n"), "listeners[0].virtual_hosts[0].routes[0].route", "set cluster or weighted_clusters"},
		{"weights sum", withRoute("- route:\n    weighted_clusters: #<\n      - {cluster: c1, weight: 80}\n      - {cluster: c2, weight: 10}\n"), "listeners[0].virtual_hosts[0].routes[0].route.weighted_clusters", "weights add up to 90, want 100"},
		{"weight not negative", withRoute("- route:\n    weighted_clusters:\n      - {cluster: c1, weight: 101}\n      - {cluster: c2, weight: -1} #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.weighted_clusters[1].weight", "weight must not be negative, got -1"},
		{"unknown cluster", withRoute("- route:\n    cluster: nope #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.cluster", `cluster "nope" is not declared under clusters (declared: "c1", "c2")`},
		{"unknown split cluster", withRoute("- route:\n    weighted_clusters:\n      - {cluster: c1, weight: 50}\n      - {cluster: c9, weight: 50} #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.weighted_clusters[1].cluster", `cluster "c9" is not declared`},
		{"unknown mirror cluster", withRoute("- route:\n    cluster: c1\n    mirror: {cluster: shadow} #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.mirror.cluster", `cluster "shadow" is not declared`},
		{"mirror percent", withRoute("- route:\n    cluster: c1\n    mirror:\n      cluster: c2\n      percent: 150 #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.mirror.percent", "between 0 and 100, got 150"},
		{"prefix rewrite with regex", withRoute("- match: {regex: /a.*}\n  route:\n    cluster: c1\n    prefix_rewrite: /b #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.prefix_rewrite", "needs a prefix or path match"},
		{"retry on", withRoute("- route:\n    cluster: c1\n    retry:\n      on: [5xx, timeout] #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.retry.on[1]", `unknown value "timeout"; want one of 5xx, gateway-error`},
		{"retriable status code", withRoute("- route:\n    cluster: c1\n    retry:\n      on: [retriable-status-codes]\n      retriable_status_codes: [503, 99] #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.retry.retriable_status_codes[1]", "status 99 is not between 100 and 599"},
		{"retriable codes missing", withRoute("- route:\n    cluster: c1\n    retry:\n      on: [retriable-status-codes] #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.retry.on", "list the codes in retriable_status_codes"},
		{"per try timeout", withRoute("- route:\n    cluster: c1\n    timeout: 2s\n    retry:\n      per_try_timeout: 3s #<\n"), "listeners[0].virtual_hosts[0].routes[0].route.retry.per_try_timeout", "longer than the route timeout 2s"},
		{"direct status", withRoute("- direct_response:\n    status: 700 #<\n"), "listeners[0].virtual_hosts[0].routes[0].direct_response.status", "status 700 is not between 100 and 599"},
		{"direct status missing", withRoute("- direct_response: {body: hi} #<\n"), "listeners[0].virtual_hosts[0].routes[0].direct_response.status", "status 0 is not between"},
		{"redirect status", withRoute("- redirect:\n    host: a.local\n    status_code: 200 #<\n"), "listeners[0].virtual_hosts[0].routes[0].redirect.status_code", "not a redirect"},
		{"redirect changes nothing", withRoute("- redirect: {status_code: 302} #<\n"), "listeners[0].virtual_hosts[0].routes[0].redirect", "must change at least one of scheme, host, path"},
		{"header mutation name", withRoute(okRoute + "  request_headers:\n    set:\n      - {name: 'a:b', value: c} #<\n"), "listeners[0].virtual_hosts[0].routes[0].request_headers.set[0].name", "cannot have"},
		{"listener filter", "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    filters: [f1, nope] #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters + baseFilters, "listeners[0].filters[1]", `filter "nope" is not declared under filters (declared: "f1")`},
		{"route filter", withRoute(okRoute + "  filters:\n    - nope #<\n"), "listeners[0].virtual_hosts[0].routes[0].filters[0]", `filter "nope" is not declared`},

		// Listener settings.
		{"direction", "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    direction: sideways #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].direction", `unknown value "sideways"; want one of outbound, inbound`},
		{"access log format", "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    access_log:\n      format: xml #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].access_log.format", `unknown value "xml"; want one of json, console`},
		{"access log field", "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    access_log:\n      fields:\n        - method\n        - latency #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].access_log.fields[1]", `unknown access log field "latency"; known fields: start_time, method`},
		{"negative limit", "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    limits:\n      max_connections: -1 #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].limits.max_connections", "must not be negative"},

		// Clusters.
		{"lb", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  lb: fastest #<\n"), "clusters[2].lb", `unknown value "fastest"; want one of round_robin, least_request, random, ring_hash`},
		{"ring hash needs hash_on", withCluster("- name: c3 #<\n  endpoints: [{address: 1.2.3.4:80}]\n  lb: ring_hash\n"), "clusters[2].hash_on", "lb ring_hash needs hash_on"},
		{"hash_on one field", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  lb: ring_hash\n  hash_on: {header: x-user, source_ip: true} #<\n"), "clusters[2].hash_on", "set exactly one of header, cookie, source_ip (found 2)"},
		{"endpoints and dns", withCluster("- name: c3 #<\n  endpoints: [{address: 1.2.3.4:80}]\n  dns: {name: a.local, port: 80}\n"), "clusters[2]", "set endpoints or dns, not both"},
		{"no endpoints", withCluster("- name: c3 #<\n  lb: random\n"), "clusters[2].endpoints", "at least one endpoint is required (or set dns)"},
		{"dns port", withCluster("- name: c3\n  dns:\n    name: a.local\n    port: 0 #<\n"), "clusters[2].dns.port", "port 0 is not a number from 1 to 65535"},
		{"endpoint weight", withCluster("- name: c3\n  endpoints:\n    - {address: 1.2.3.4:80, weight: -2} #<\n"), "clusters[2].endpoints[0].weight", "weight must be at least 1, got -2"},
		{"duplicate endpoint", withCluster("- name: c3\n  endpoints:\n    - {address: 1.2.3.4:80}\n    - {address: 1.2.3.4:80} #<\n"), "clusters[2].endpoints[1].address", "duplicate endpoint address"},
		{"health threshold", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    healthy_threshold: -1 #<\n"), "clusters[2].health_check.healthy_threshold", "must be at least 1"},
		{"health statuses", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    expected_statuses: [200, 600] #<\n"), "clusters[2].health_check.expected_statuses[1]", "status 600 is not between 100 and 599"},
		{"outlier percent", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  outlier_detection:\n    max_ejection_percent: 101 #<\n"), "clusters[2].outlier_detection.max_ejection_percent", "between 0 and 100, got 101"},
		{"panic threshold", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  panic_threshold: 200 #<\n"), "clusters[2].panic_threshold", "or -1 to turn panic mode off"},

		// Filters.
		{"log level", withFilter("- name: f2\n  module: {path: a.wasm}\n  log_level: verbose #<\n"), "filters[1].log_level", `unknown value "verbose"; want one of trace, debug, info, warn, error, critical`},
		{"failure policy", withFilter("- name: f2\n  module: {path: a.wasm}\n  failure_policy: ignore #<\n"), "filters[1].failure_policy", `unknown value "ignore"; want one of fail_closed, fail_open`},
		{"module path and url", withFilter("- name: f2\n  module: {path: a.wasm, url: 'https://x/a.wasm'} #<\n"), "filters[1].module", "set one of path, url and oci, not several"},
		{"module path and oci", withFilter("- name: f2\n  module: {path: a.wasm, oci: 'r.local/a:v1'} #<\n"), "filters[1].module", "set one of path, url and oci, not several"},
		{"oci reference", withFilter("- name: f2\n  module:\n    oci: 'R.local/UPPER:v1' #<\n"), "filters[1].module.oci", "is not an image reference"},
		{"oci pull policy", withFilter("- name: f2\n  module:\n    oci: r.local/a:v1\n    pull_policy: sometimes #<\n"), "filters[1].module.pull_policy", `unknown value "sometimes"; want one of if_not_present, always`},
		{"pull secret without oci", withFilter("- name: f2\n  module:\n    path: a.wasm\n    pull_secret: s.json #<\n"), "filters[1].module.pull_secret", "applies only to a module pulled by oci"},
		{"verify without oci", withFilter("- name: f2\n  module:\n    path: a.wasm\n    verify: {keys: [k.pub]} #<\n"), "filters[1].module.verify", "signatures are checked only on a module pulled by oci"},
		{"verify without keys", withFilter("- name: f2\n  module:\n    oci: r.local/a:v1\n    verify: {keys: []} #<\n"), "filters[1].module.verify.keys", "at least one public key"},
		{"module neither", withFilter("- name: f2\n  module: {} #<\n"), "filters[1].module", "set path"},
		{"url needs sha256", withFilter("- name: f2\n  module:\n    url: https://x.local/a.wasm #<\n"), "filters[1].module.url", "needs sha256"},
		{"sha256 hex", withFilter("- name: f2\n  module:\n    path: a.wasm\n    sha256: abc123 #<\n"), "filters[1].module.sha256", `sha256 must be 64 hex digits, got "abc123"`},
		{"url scheme", withFilter("- name: f2\n  module:\n    url: ftp://x.local/a.wasm #<\n    sha256: " + strings.Repeat("ab", 32) + "\n"), "filters[1].module.url", "not an http(s) URL"},
		{"memory limit", withFilter("- name: f2\n  module: {path: a.wasm}\n  memory_limit_mib: 5000 #<\n"), "filters[1].memory_limit_mib", "must be between 1 and 4096"},
		{"vm_id shared with another module", withFilter("- name: f2\n  module: {path: a.wasm}\n  vm_id: v\n- name: f3\n  module: {path: b.wasm}\n  vm_id: v #<\n"), "filters[2].vm_id", `filters "f2" and "f3" share vm_id "v" but differ in module`},
		{"metadata null", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  metadata:\n    filter_metadata: #<\n      ns: {k: null}\n"), "clusters[2].metadata.filter_metadata", `namespace "ns": key "k": null is not a value`},
		{"endpoint metadata null", withCluster("- name: c3\n  endpoints:\n    - address: 1.2.3.4:80\n      metadata:\n        filter_metadata: #<\n          ns: {k: null}\n"), "clusters[2].endpoints[0].metadata.filter_metadata", `namespace "ns": key "k": null is not a value`},
		{"metadata key not a string", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  metadata:\n    filter_metadata: #<\n      ns: {k: {1: a}}\n"), "clusters[2].metadata.filter_metadata", "use strings as map keys"},
		{"stats tag regex", withFilter("") + "stats_tags:\n  - tag_name: v\n    regex: '_v=[a-z]+' #<\n", "stats_tags[0].regex", "needs a capture group"},
		{"service named like a filter", withFilter("") + "wasm_services:\n  - name: f1 #<\n    module: {path: a.wasm}\n", "wasm_services[0].name", `duplicate filter or wasm service name "f1"`},
		{"vm_id shared with another vm_config", withFilter("- name: f2\n  module: {path: a.wasm}\n  vm_id: v\n  vm_config: x\n- name: f3\n  module: {path: a.wasm}\n  vm_id: v #<\n"), "filters[2].vm_id", "differ in vm_config"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line := markedLine(t, tc.doc)
			c, err := Parse("bad.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s\nconfig: %+v", tc.doc, c)
			}
			place := fmt.Sprintf("bad.yaml:%d: ", line)
			if tc.path != "" {
				place += tc.path + ": "
			}
			found := false
			for _, l := range strings.Split(err.Error(), "\n") {
				found = found || (strings.HasPrefix(l, place) && strings.Contains(l[len(place):], tc.reason))
			}
			if !found {
				t.Fatalf("no error line starts with %q and says %q; got:\n  %s\nconfig:\n%s", place, tc.reason, strings.ReplaceAll(err.Error(), "\n", "\n  "), tc.doc)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is %T, want Errors", err)
			}
		})
	}
}

func TestBaseConfigsAreValid(t *testing.T) {
	// The fixtures the table above breaks must be valid themselves, or a
	// case could pass for the wrong reason.
	for name, doc := range map[string]string{
		"route":   withRoute(okRoute),
		"cluster": withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n"),
		"filter":  withFilter("- name: f2\n  module: {path: a.wasm}\n"),
	} {
		if _, err := Parse(name+".yaml", []byte(doc)); err != nil {
			t.Errorf("%s: %v\n%s", name, err, doc)
		}
	}
}

func TestParseFullExample(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != "example-1" || c.Node.ID != "checkout-7d9f" {
		t.Errorf("version %q node %q", c.Version, c.Node.ID)
	}
	if len(c.Listeners) != 2 || len(c.Clusters) != 5 || len(c.Filters) != 2 {
		t.Fatalf("got %d listeners, %d clusters, %d filters", len(c.Listeners), len(c.Clusters), len(c.Filters))
	}
	canary := c.Listeners[0].VirtualHosts[0].Routes[1]
	if canary.Name != "orders-canary" || len(canary.Route.WeightedClusters) != 2 || canary.Route.WeightedClusters[1].Weight != 10 {
		t.Errorf("canary route: %+v", canary)
	}
	if got := canary.Route.Retry.PerTryTimeout.D(); got != time.Second {
		t.Errorf("per_try_timeout = %s", got)
	}
	if got := c.Filters[0].Config; got != `{"audiences":["orders","users"],"issuer":"https://issuer.mesh.local"}` {
		t.Errorf("filter config = %s", got)
	}
	// Defaults reach into the example too.
	inbound := c.Listeners[1]
	if inbound.Limits.MaxConnections != 10000 || inbound.AccessLog.Format != "json" {
		t.Errorf("inbound limits/access log not defaulted: %+v %+v", inbound.Limits, inbound.AccessLog)
	}
	if got := inbound.VirtualHosts[0].Routes[0].Route.Timeout.D(); got != 30*time.Second {
		t.Errorf("inbound route timeout %s, want the 30s the file sets", got)
	}
	if c.Clusters[4].PanicThreshold != -1 {
		t.Errorf("panic_threshold -1 was overwritten: %v", c.Clusters[4].PanicThreshold)
	}
}

func TestDefaults(t *testing.T) {
	routes := `- match: {}
  route:
    cluster: c1
    retry: {}
    mirror: {cluster: c2}
- redirect: {scheme: https}
`
	cluster := "- name: c3\n  dns: {name: c3.local, port: 80}\n  health_check: {}\n  outlier_detection: {}\n" +
		"- name: c4\n  protocol: http2\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check: {grpc: {}}\n"
	c, err := Parse("min.yaml", []byte(baseListener+indent(routes, 10)+baseClusters+indent(cluster, 2)+baseFilters))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	r := l.VirtualHosts[0].Routes[0]
	cl := c.Clusters[2]
	checks := []struct {
		name      string
		got, want any
	}{
		{"admin.address", c.Admin.Address, "127.0.0.1:9901"},
		{"direction", l.Direction, "outbound"},
		{"max_header_bytes", l.Limits.MaxHeaderBytes, 64 << 10},
		{"max_headers_count", l.Limits.MaxHeadersCount, 100},
		{"max_body_bytes", l.Limits.MaxBodyBytes, 4 << 20},
		{"read_timeout", l.Limits.ReadTimeout.D(), 30 * time.Second},
		{"write_timeout", l.Limits.WriteTimeout.D(), 30 * time.Second},
		{"idle_timeout", l.Limits.IdleTimeout.D(), 90 * time.Second},
		{"max_connections", l.Limits.MaxConnections, 10000},
		{"access_log.path", l.AccessLog.Path, "stdout"},
		{"access_log.format", l.AccessLog.Format, "json"},
		{"match.prefix", r.Match.Prefix, "/"},
		{"route.timeout", r.Route.Timeout.D(), 15 * time.Second},
		{"mirror.percent", r.Route.Mirror.Percent, 100.0},
		{"retry.attempts", r.Route.Retry.Attempts, 2},
		{"retry.on", r.Route.Retry.On, []string{"gateway-error", "connect-failure", "reset"}},
		{"retry.backoff_base", r.Route.Retry.BackoffBase.D(), 25 * time.Millisecond},
		{"retry.backoff_max", r.Route.Retry.BackoffMax.D(), 250 * time.Millisecond},
		{"retry.budget_percent", r.Route.Retry.BudgetPercent, 20.0},
		{"retry.budget_min_concurrency", r.Route.Retry.BudgetMinConcurrency, 10},
		{"redirect.status_code", l.VirtualHosts[0].Routes[1].Redirect.StatusCode, 301},
		{"endpoint weight", c.Clusters[0].Endpoints[0].Weight, 1},
		{"lb", cl.LB, "round_robin"},
		{"connect_timeout", cl.ConnectTimeout.D(), time.Second},
		{"max_conns_per_endpoint", cl.MaxConnsPerEndpoint, 1024},
		{"cluster idle_timeout", cl.IdleTimeout.D(), 60 * time.Second},
		{"dns.refresh", cl.DNS.Refresh.D(), 30 * time.Second},
		{"health.path", cl.HealthCheck.Path, "/healthz"},
		{"health.interval", cl.HealthCheck.Interval.D(), 5 * time.Second},
		{"health.timeout", cl.HealthCheck.Timeout.D(), time.Second},
		{"health.healthy_threshold", cl.HealthCheck.HealthyThreshold, 2},
		{"health.unhealthy_threshold", cl.HealthCheck.UnhealthyThreshold, 3},
		{"grpc health.path (none)", c.Clusters[3].HealthCheck.Path, ""},
		{"grpc health.service (overall)", *c.Clusters[3].HealthCheck.GRPC, GRPCHealthCheck{}},
		{"grpc health.interval", c.Clusters[3].HealthCheck.Interval.D(), 5 * time.Second},
		{"grpc health.unhealthy_threshold", c.Clusters[3].HealthCheck.UnhealthyThreshold, 3},
		{"outlier.consecutive_5xx", cl.OutlierDetection.Consecutive5xx, 5},
		{"outlier.consecutive_gateway_errors", cl.OutlierDetection.ConsecutiveGatewayErrors, 0},
		{"outlier.interval", cl.OutlierDetection.Interval.D(), 10 * time.Second},
		{"outlier.base_ejection_time", cl.OutlierDetection.BaseEjectionTime.D(), 30 * time.Second},
		{"outlier.max_ejection_time", cl.OutlierDetection.MaxEjectionTime.D(), 300 * time.Second},
		{"outlier.max_ejection_percent", cl.OutlierDetection.MaxEjectionPercent, 10.0},
		{"cb.max_connections", cl.CircuitBreakers.MaxConnections, 1024},
		{"cb.max_pending", cl.CircuitBreakers.MaxPending, 1024},
		{"cb.max_requests", cl.CircuitBreakers.MaxRequests, 1024},
		{"cb.max_retries", cl.CircuitBreakers.MaxRetries, 1024},
		{"panic_threshold", cl.PanicThreshold, 50.0},
		{"filter failure_policy", c.Filters[0].FailurePolicy, "fail_closed"},
		{"filter pool_size (runtime decides)", c.Filters[0].PoolSize, 0},
		{"filter memory_limit_mib", c.Filters[0].MemoryLimitMiB, 64},
		{"filter callback_timeout", c.Filters[0].CallbackTimeout.D(), 50 * time.Millisecond},
		{"filter max_body_bytes", c.Filters[0].MaxBodyBytes, 1 << 20},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// A route without a retry policy retries tries that got no answer, and a
// cluster without outlier_detection has it with its defaults (issue 18 §3);
// disabled: true keeps either off.
func TestDefaultRetriesAndOutlierDetection(t *testing.T) {
	routes := `- match: {prefix: /off}
  route: {cluster: c2, retry: {disabled: true}}
- match: {prefix: /}
  route: {cluster: c1}
- redirect: {scheme: https}
`
	cluster := "- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  outlier_detection: {disabled: true}\n"
	c, err := Parse("min.yaml", []byte(baseListener+indent(routes, 10)+baseClusters+indent(cluster, 2)+baseFilters))
	if err != nil {
		t.Fatal(err)
	}
	rs := c.Listeners[0].VirtualHosts[0].Routes
	if got, want := *rs[1].Route.Retry, (RetryPolicy{Attempts: 2, On: []string{"connect-failure", "reset"},
		BackoffBase: Duration(25 * time.Millisecond), BackoffMax: Duration(250 * time.Millisecond),
		BudgetPercent: 20, BudgetMinConcurrency: 10}); !reflect.DeepEqual(got, want) {
		t.Errorf("a route without retry gets %+v, want %+v", got, want)
	}
	if got := *rs[0].Route.Retry; !reflect.DeepEqual(got, RetryPolicy{Disabled: true}) {
		t.Errorf("retry: {disabled: true} became %+v", got)
	}
	if rs[2].Route != nil {
		t.Errorf("a redirect got a route action: %+v", rs[2].Route)
	}
	want := OutlierDetection{Consecutive5xx: 5, Interval: Duration(10 * time.Second), BaseEjectionTime: Duration(30 * time.Second),
		MaxEjectionTime: Duration(300 * time.Second), MaxEjectionPercent: 10}
	if got := c.Clusters[0].OutlierDetection; got == nil || *got != want {
		t.Errorf("a cluster without outlier_detection gets %+v, want %+v", got, want)
	}
	if got := c.Clusters[2].OutlierDetection; got == nil || *got != (OutlierDetection{Disabled: true}) {
		t.Errorf("outlier_detection: {disabled: true} became %+v", got)
	}
}

func TestApplyDefaultsIdempotent(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Load(filepath.Join("testdata", "full.yaml"))
	again.ApplyDefaults()
	again.ApplyDefaults()
	if !reflect.DeepEqual(c, again) {
		t.Fatalf("ApplyDefaults changed a defaulted config:\n%+v\n%+v", c, again)
	}
}

func TestParseVersionFromContent(t *testing.T) {
	doc := withRoute(okRoute)
	a, err := Parse("a.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Parse("a.yaml", []byte(doc+"# changed\n"))
	if len(a.Version) != 12 || a.Version == b.Version {
		t.Fatalf("versions %q and %q: want 12 hex digits that differ", a.Version, b.Version)
	}
}

func TestValidateWithoutSource(t *testing.T) {
	c, err := Parse("ok.yaml", []byte(withRoute(okRoute)))
	if err != nil {
		t.Fatal(err)
	}
	c.Clusters[1].Name = "c1"
	err = Validate("snapshot v7", nil, c)
	want := `snapshot v7: clusters[1].name: duplicate cluster name "c1": clusters[0].name already uses it`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestErrorsAreAllReportedInSourceOrderAndCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString(baseListener + indent(okRoute, 10) + "clusters:\n")
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "  - name: c%d\n    lb: bogus\n", i) // two errors each: lb, no endpoints
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v", err)
	}
	// 50 cluster errors plus the route's unknown cluster c1... c1 exists
	// (c1 is one of the 25), so exactly 50.
	if len(es) != 50 {
		t.Fatalf("got %d errors, want 50:\n%v", len(es), err)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Line < es[i-1].Line {
			t.Fatalf("errors out of source order at %d: %v then %v", i, es[i-1], es[i])
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 21 || lines[20] != "... and 30 more errors" {
		t.Fatalf("Error() has %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestParseEmptyAndMultiDocument(t *testing.T) {
	if _, err := Parse("e.yaml", []byte("# nothing\n")); err == nil || err.Error() != "e.yaml: empty config" {
		t.Errorf("empty: %v", err)
	}
	doc := withRoute(okRoute) + "---\nlisteners: []\n"
	_, err := Parse("m.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "holds one YAML document") {
		t.Errorf("multi-document: %v", err)
	}
}

func TestAccessLogFieldsIsACopy(t *testing.T) {
	f := AccessLogFields()
	if len(f) != 20 || f[0] != "start_time" || f[19] != "retries" {
		t.Fatalf("fields %v", f)
	}
	f[0] = "x"
	if AccessLogFields()[0] != "start_time" {
		t.Fatal("AccessLogFields returned shared storage")
	}
}

func TestLineOfPath(t *testing.T) {
	doc := `base: &b
  lb: random
clusters:
  - name: a
    <<: *b
    endpoints:
      - address: 1.2.3.4:80
`
	ix := newLineIndex([]byte(doc))
	for path, want := range map[string]int{
		"clusters":                      3,
		"clusters[0]":                   4,
		"clusters[0].name":              4,
		"clusters[0].lb":                2, // through the merge
		"clusters[0].endpoints[0]":      7,
		"clusters[0].endpoints[0].port": 7, // missing: where it belongs
		"clusters[5].name":              3,
		"nope":                          1,
	} {
		if got := ix.line(path); got != want {
			t.Errorf("line(%q) = %d, want %d", path, got, want)
		}
	}
}

// FuzzParse: any input either parses into a config that validates and whose
// defaults are stable, or fails with errors that name the file.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(withRoute(okRoute)))
	f.Add([]byte(withRoute("- route:\n    weighted_clusters: [{cluster: c1, weight: 80}]\n")))
	f.Add([]byte("listeners:\n  - name: a\n  address: x\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("listeners: [{name: 1, address: {}}]\nclusters: !!binary aGk=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			for _, e := range es {
				if e.File != "fuzz.yaml" || !strings.HasPrefix(e.Error(), "fuzz.yaml") {
					t.Fatalf("error without file: %q", e.Error())
				}
			}
			return
		}
		if err := Validate("fuzz.yaml", data, c); err != nil {
			t.Fatalf("Parse accepted a config Validate refuses: %v", err)
		}
		before := fmt.Sprintf("%+v", *c)
		c.ApplyDefaults()
		if after := fmt.Sprintf("%+v", *c); after != before {
			t.Fatalf("ApplyDefaults is not idempotent:\n%s\n%s", before, after)
		}
	})
}

// A bad value inside a flow mapping names its own field, and a type error
// does not hide the problems validation finds elsewhere: all at once, by
// line, each with its field path.
func TestDecodeErrorsDoNotHideTheRest(t *testing.T) {
	src := `listeners:
  - name: main
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: c, timeout: 5}
          - match: {prefix: /x}
            route: {cluster: nope}
clusters:
  - name: c
    endpoints: [{address: "127.0.0.1:1"}]
    connect_timeout: 1x
  - name: d
    lb: bogus
    endpoints: [{address: "nowhere"}]
`
	_, err := Parse("t.yaml", []byte(src))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := []string{
		"t.yaml:9: listeners[0].virtual_hosts[0].routes[0].route.timeout: bad duration \"5\"",
		"t.yaml:11: listeners[0].virtual_hosts[0].routes[1].route.cluster: cluster \"nope\"",
		"t.yaml:15: clusters[0].connect_timeout: bad duration \"1x\"",
		"t.yaml:17: clusters[1].lb: unknown value \"bogus\"",
		"t.yaml:18: clusters[1].endpoints[0].address:",
	}
	if len(errs) != len(want) {
		t.Fatalf("want %d problems, got %d:\n%v", len(want), len(errs), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("problem %d: got %q, want it to start with %q", i, errs[i].Error(), w)
		}
	}
}
