package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// listenerWith is a config whose one listener has extra (indented under
// the listener) and a virtual host with one route.
func listenerWith(extra string) string {
	return "listeners:\n  - name: l\n    address: 127.0.0.1:0\n" + indent(extra, 4) +
		"    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters
}

// vhostWith is a config whose one virtual host is vh (indented under
// virtual_hosts).
func vhostWith(vh string) string {
	return "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    virtual_hosts:\n" + indent(vh, 6) + baseClusters
}

// TestParseRefusesMore covers the validation branches the table in
// validate_test.go leaves out (found with go test -coverprofile): each case
// checks the whole "FILE:LINE: PATH: reason" line, so a branch that stops
// refusing, or refuses with another path or line, fails here.
func TestParseRefusesMore(t *testing.T) {
	const r0 = "listeners[0].virtual_hosts[0].routes[0]"
	cases := []struct {
		name   string
		doc    string
		path   string
		reason string
	}{
		// Header values reach the wire as they are: CR or LF would split a
		// header (response splitting), NUL is refused by peers.
		{"set value CR LF", withRoute(okRoute + "  request_headers:\n    set:\n      - {name: x-a, value: \"b\\r\\nx-evil: 1\"} #<\n"), r0 + ".request_headers.set[0].value", "header value must not contain CR, LF or NUL"},
		{"add value LF", withRoute(okRoute + "  response_headers:\n    add:\n      - {name: x-a, value: \"b\\nc\"} #<\n"), r0 + ".response_headers.add[0].value", "header value must not contain CR, LF or NUL"},
		{"add value CR", withRoute(okRoute + "  request_headers:\n    add:\n      - {name: x-a, value: ok}\n      - {name: x-b, value: \"b\\rc\"} #<\n"), r0 + ".request_headers.add[1].value", "header value must not contain CR, LF or NUL"},
		{"set value NUL", withRoute(okRoute + "  response_headers:\n    set:\n      - {name: x-a, value: \"b\\0c\"} #<\n"), r0 + ".response_headers.set[0].value", "header value must not contain CR, LF or NUL"},
		{"header name missing", withRoute(okRoute + "  request_headers:\n    set:\n      - {value: b} #<\n"), r0 + ".request_headers.set[0].name", "name is required"},
		{"remove name", withRoute(okRoute + "  response_headers:\n    remove:\n      - 'x a' #<\n"), r0 + ".response_headers.remove[0]", `header name "x a" has characters a header name cannot have`},

		// Durations: the YAML decoder refuses negative ones itself.
		{"negative route timeout", withRoute("- route:\n    cluster: c1\n    timeout: -1s #<\n"), r0 + ".route.timeout", `duration "-1s" is negative`},

		// Addresses and names.
		{"endpoint without host", withCluster("- name: c3\n  endpoints:\n    - address: ':80' #<\n"), "clusters[2].endpoints[0].address", `address ":80" has no host`},
		{"listener filter empty", listenerWith("filters: [''] #<\n"), "listeners[0].filters[0]", "filter name is required"},
		{"no filters declared", "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    filters: [f9] #<\n    virtual_hosts: [{name: v, domains: ['*'], routes: [{route: {cluster: c1}}]}]\n" + baseClusters, "listeners[0].filters[0]", `filter "f9" is not declared under filters (declared: none)`},

		// Virtual hosts and domains.
		{"no domains", vhostWith("- name: v\n  domains: [] #<\n  routes: [{route: {cluster: c1}}]\n"), "listeners[0].virtual_hosts[0].domains", `at least one domain is required ("*" matches every host)`},
		{"empty domain", vhostWith("- name: v\n  domains: [''] #<\n  routes: [{route: {cluster: c1}}]\n"), "listeners[0].virtual_hosts[0].domains[0]", "domain is empty"},
		{"domain with a path", vhostWith("- name: v\n  domains: [api.local/x] #<\n  routes: [{route: {cluster: c1}}]\n"), "listeners[0].virtual_hosts[0].domains[0]", `domain "api.local/x" has characters a host cannot have`},
		{"wildcard with port", vhostWith("- name: v\n  domains: ['*.local:8080'] #<\n  routes: [{route: {cluster: c1}}]\n"), "listeners[0].virtual_hosts[0].domains[0]", `domain "*.local:8080": a port is only allowed in an exact domain`},
		{"no routes", vhostWith("- name: v\n  domains: ['*']\n  routes: [] #<\n"), "listeners[0].virtual_hosts[0].routes", "at least one route is required"},

		// Matching.
		{"path slash", withRoute("- match: {path: a} #<\n  route: {cluster: c1}\n"), r0 + ".match.path", `path "a" must start with "/"`},
		{"method token", withRoute("- match:\n    methods: ['GE T'] #<\n  route: {cluster: c1}\n"), r0 + ".match.methods[0]", `method "GE T" is not an HTTP method name`},
		{"method empty", withRoute("- match:\n    methods: [''] #<\n  route: {cluster: c1}\n"), r0 + ".match.methods[0]", `method "" is not an HTTP method name`},

		// Route actions.
		{"prefix rewrite slash", withRoute("- route:\n    cluster: c1\n    prefix_rewrite: b #<\n"), r0 + ".route.prefix_rewrite", `prefix_rewrite "b" must start with "/"`},
		{"path rewrite query", withRoute("- route:\n    cluster: c1\n    path_rewrite: /b?x=1 #<\n"), r0 + ".route.path_rewrite", `must start with "/" and hold no query`},
		{"path and prefix rewrite", withRoute("- route:\n    cluster: c1\n    prefix_rewrite: /a\n    path_rewrite: /b #<\n"), r0 + ".route.path_rewrite", "not both"},
		{"host rewrite", withRoute("- route:\n    cluster: c1\n    host_rewrite: 'a b' #<\n"), r0 + ".route.host_rewrite", `host_rewrite "a b" is not a host`},
		{"host rewrite CR LF", withRoute("- route:\n    cluster: c1\n    host_rewrite: \"a\\r\\nx: y\" #<\n"), r0 + ".route.host_rewrite", "is not a host"},
		{"codes without on", withRoute("- route:\n    cluster: c1\n    retry:\n      on: [5xx]\n      retriable_status_codes: [503] #<\n"), r0 + ".route.retry.retriable_status_codes", "has no effect unless on includes retriable-status-codes"},
		{"backoff max", withRoute("- route:\n    cluster: c1\n    retry:\n      backoff_base: 100ms\n      backoff_max: 10ms #<\n"), r0 + ".route.retry.backoff_max", "backoff_max 10ms is shorter than backoff_base 100ms"},
		{"negative attempts", withRoute("- route:\n    cluster: c1\n    retry:\n      attempts: -1 #<\n"), r0 + ".route.retry.attempts", "must not be negative, got -1"},
		{"budget percent", withRoute("- route:\n    cluster: c1\n    retry:\n      budget_percent: 120 #<\n"), r0 + ".route.retry.budget_percent", "must be between 0 and 100, got 120"},
		{"redirect host", withRoute("- redirect:\n    host: 'a/b' #<\n"), r0 + ".redirect.host", `host "a/b" is not a host`},
		{"redirect path", withRoute("- redirect:\n    path: b #<\n"), r0 + ".redirect.path", `path "b" must start with "/"`},
		{"redirect scheme", withRoute("- redirect:\n    scheme: ftp #<\n"), r0 + ".redirect.scheme", `unknown value "ftp"; want one of http, https`},

		// Clusters.
		{"hash_on without ring_hash", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  hash_on: {header: x-user} #<\n"), "clusters[2].hash_on", "hash_on only applies to lb ring_hash"},
		{"hash_on header", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  lb: ring_hash\n  hash_on:\n    header: 'x user' #<\n"), "clusters[2].hash_on.header", `header name "x user" has characters a header name cannot have`},
		{"health path", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    path: healthz #<\n"), "clusters[2].health_check.path", `path "healthz" must start with "/"`},
		{"health timeout", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    interval: 1s\n    timeout: 2s #<\n"), "clusters[2].health_check.timeout", "timeout 2s is longer than interval 1s"},
		{"unhealthy threshold", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    unhealthy_threshold: -3 #<\n"), "clusters[2].health_check.unhealthy_threshold", "must be at least 1, got -3"},
		{"grpc health on http1", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    grpc: {service: x} #<\n"), "clusters[2].health_check.grpc", `a gRPC health check needs the cluster's protocol to be http2 or auto, not "http1"`},
		{"grpc health path", withCluster("- name: c3\n  protocol: http2\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    grpc: {}\n    path: /ready #<\n"), "clusters[2].health_check.path", "path does not apply to a gRPC health check"},
		{"grpc health statuses", withCluster("- name: c3\n  protocol: auto\n  endpoints: [{address: 1.2.3.4:80}]\n  health_check:\n    grpc: {}\n    expected_statuses: [200] #<\n"), "clusters[2].health_check.expected_statuses", "expected_statuses does not apply to a gRPC health check"},
		{"ejection times", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  outlier_detection:\n    base_ejection_time: 30s\n    max_ejection_time: 10s #<\n"), "clusters[2].outlier_detection.max_ejection_time", "max_ejection_time 10s is shorter than base_ejection_time 30s"},
		{"max retries", withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n  circuit_breakers:\n    max_retries: -1 #<\n"), "clusters[2].circuit_breakers.max_retries", "must not be negative, got -1"},
		{"dns name", withCluster("- name: c3\n  dns: #<\n    port: 80\n"), "clusters[2].dns.name", "name is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line := markedLine(t, tc.doc)
			_, err := Parse("bad.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.doc)
			}
			want := fmt.Sprintf("bad.yaml:%d: %s: ", line, tc.path)
			found := false
			for _, l := range strings.Split(err.Error(), "\n") {
				found = found || (strings.HasPrefix(l, want) && strings.Contains(l[len(want):], tc.reason))
			}
			if !found {
				t.Fatalf("no error line starts with %q and says %q; got:\n  %s\nconfig:\n%s", want, tc.reason, strings.ReplaceAll(err.Error(), "\n", "\n  "), tc.doc)
			}
		})
	}
}

// TestHeaderValuesAllowedCharacters: the CR/LF/NUL refusal is narrow; a
// value with tabs, spaces, quotes and non-ASCII text is valid.
func TestHeaderValuesAllowedCharacters(t *testing.T) {
	doc := withRoute(okRoute + "  request_headers:\n    set:\n      - {name: x-a, value: \"a\\tb c \\\"q\\\" é\"}\n")
	c, err := Parse("ok.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if got := c.Listeners[0].VirtualHosts[0].Routes[0].RequestHeaders.Set[0].Value; got != "a\tb c \"q\" é" {
		t.Fatalf("value %q", got)
	}
}

// TestValidateBuiltInConfig: a config built in code (no YAML) or none at all
// still gets errors, with a path but no line; the checks the YAML decoder
// makes first (negative durations) are made again for it.
func TestValidateBuiltInConfig(t *testing.T) {
	err := Validate("built-in", nil, nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Error() != "built-in: no config" {
		t.Fatalf("nil config: %v", err)
	}

	c := &Config{Listeners: []Listener{{Name: "l", Address: "127.0.0.1:0", VirtualHosts: []VirtualHost{{
		Name: "v", Domains: []string{"*"},
		Routes: []Route{{Route: &RouteAction{Cluster: "c1"}, RequestHeaders: HeaderMutation{Set: []Header{{Name: "x-a", Value: "a\r\nb"}}}}},
	}}}}, Clusters: []Cluster{{Name: "c1", Endpoints: []Endpoint{{Address: "127.0.0.1:80"}}}}}
	c.Listeners[0].VirtualHosts[0].Routes[0].Route.Timeout = Duration(-time.Second)
	c.Clusters[0].ConnectTimeout = Duration(-5 * time.Millisecond)
	err = Validate("", nil, c)
	want := []string{
		"listeners[0].virtual_hosts[0].routes[0].request_headers.set[0].value: header value must not contain CR, LF or NUL",
		"listeners[0].virtual_hosts[0].routes[0].route.timeout: must not be negative, got -1s",
		"clusters[0].connect_timeout: must not be negative, got -5ms",
	}
	if !errors.As(err, &es) {
		t.Fatalf("built config: %v", err)
	}
	got := map[string]bool{}
	for _, e := range es {
		got[e.Error()] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("built config: no error %q; got:\n%v", w, err)
		}
	}
}

func TestFieldErrorFormats(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Path: "x.y", Reason: "bad"}, "a.yaml:3: x.y: bad"},
		{FieldError{File: "a.yaml", Path: "x.y", Reason: "bad"}, "a.yaml: x.y: bad"},
		{FieldError{Line: 3, Path: "x.y", Reason: "bad"}, "line 3: x.y: bad"},
		{FieldError{Reason: "bad"}, "bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}
