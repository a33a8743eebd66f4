package config

import (
	"strings"
	"testing"
)

// TestValidationLimitsAccepted: the values on the accepted side of limits
// the other tables test only from the refused side (each found as a
// surviving gremlins mutant of validate.go), with and without defaults.
func TestValidationLimitsAccepted(t *testing.T) {
	c3 := func(extra string) string {
		return withCluster("- name: c3\n  endpoints: [{address: 1.2.3.4:80}]\n" + extra)
	}
	for _, tc := range []struct {
		name string
		raw  bool // validate as written, without defaults
		doc  string
		want string // "" for accepted
	}{
		{"stats tag regex with one capture group", false, withFilter("") + "stats_tags:\n  - tag_name: v\n    regex: '_v=([a-z]+)'\n", ""},
		{"dns port 1", false, withCluster("- name: c3\n  dns: {name: a.local, port: 1}\n"), ""},
		{"dns port 65535", false, withCluster("- name: c3\n  dns: {name: a.local, port: 65535}\n"), ""},
		{"dns port 65536", false, withCluster("- name: c3\n  dns: {name: a.local, port: 65536}\n"), "port 65536 is not a number from 1 to 65535"},
		{"health check timeout equal to its interval", false, c3("  health_check: {interval: 2s, timeout: 2s}\n"), ""},
		{"health check timeout over its interval", false, c3("  health_check: {interval: 2s, timeout: 3s}\n"), "timeout 3s is longer than interval 2s"},
		{"health check timeout with no interval", true, c3("  health_check: {path: /h, timeout: 2s}\n"), ""},
		{"health check thresholds unset", true, c3("  health_check: {path: /h}\n"), ""},
		{"health check threshold -1", true, c3("  health_check: {path: /h, healthy_threshold: -1}\n"), "healthy_threshold: must be at least 1, got -1"},
		{"max ejection time equal to base", false, c3("  outlier_detection: {base_ejection_time: 30s, max_ejection_time: 30s}\n"), ""},
		{"base ejection time with no max", true, c3("  outlier_detection: {base_ejection_time: 30s}\n"), ""},
		{"panic threshold 0", false, c3("  panic_threshold: 0\n"), ""},
		{"panic threshold 100", false, c3("  panic_threshold: 100\n"), ""},
		{"panic threshold -0.5", false, c3("  panic_threshold: -0.5\n"), "or -1 to turn panic mode off"},
		{"memory limit 4096 MiB", false, withFilter("- name: f2\n  module: {path: a.wasm}\n  memory_limit_mib: 4096\n"), ""},
		{"memory limit unset", true, withFilter("- name: f2\n  module: {path: a.wasm}\n"), ""},
		{"memory limit -1", true, withFilter("- name: f2\n  module: {path: a.wasm}\n  memory_limit_mib: -1\n"), "must be between 1 and 4096"},
		{"metadata in a namespace", false, c3("  metadata:\n    filter_metadata:\n      envoy.lb: {canary: true, zone: z1}\n"), ""},
		{"metadata lists and maps", false, c3("  metadata:\n    filter_metadata:\n      ns: {l: [1, a, {m: [true, 2.5]}], m: {a: [x]}}\n"), ""},
		{"metadata null in a list", false, c3("  metadata:\n    filter_metadata:\n      ns: {l: [1, null]}\n"), `key "l": null is not a value`},
		{"metadata null in a map", false, c3("  metadata:\n    filter_metadata:\n      ns: {m: {a: [x], b: null}}\n"), `key "m": null is not a value`},
		{"metadata in an empty namespace", false, c3("  metadata:\n    filter_metadata:\n      '': {zone: z1}\n"), "a namespace is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.raw {
				err = validateRaw(t, tc.doc)
			} else {
				_, err = Parse("e.yaml", []byte(tc.doc))
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v\n%s", err, tc.doc)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q\n%s", err, tc.want, tc.doc)
			}
		})
	}
}

// TestHostRewriteAndRedirectHostCharacters: each character that would make
// a host_rewrite or a redirect's host more than a host (whitespace, CR,
// LF, a path, query or fragment, userinfo) is refused.
func TestHostRewriteAndRedirectHostCharacters(t *testing.T) {
	const r0 = "listeners[0].virtual_hosts[0].routes[0]"
	// c is written in the YAML document as it is: \t, \r and \n are
	// YAML escapes (a raw CR or LF in a quoted scalar folds to a space).
	for _, c := range []string{" ", `\t`, `\r`, `\n`, "/", "?", "#", "@"} {
		for _, tc := range []struct{ route, path, reason string }{
			{"- match: {prefix: /}\n  route: {cluster: c1, host_rewrite: \"a" + c + "b\"}\n", r0 + ".route.host_rewrite", "is not a host"},
			{"- redirect: {host: \"a" + c + "b\"}\n", r0 + ".redirect.host", "is not a host"},
		} {
			_, err := Parse("h.yaml", []byte(withRoute(tc.route)))
			if err == nil || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("%q in %s: %v, want refused", c, tc.path, err)
			}
		}
	}
	for _, route := range []string{
		"- match: {prefix: /}\n  route: {cluster: c1, host_rewrite: \"a.b:8080\"}\n",
		"- redirect: {host: \"a.b:8443\"}\n",
	} {
		if _, err := Parse("h.yaml", []byte(withRoute(route))); err != nil {
			t.Errorf("%s: %v, want accepted", route, err)
		}
	}
}
