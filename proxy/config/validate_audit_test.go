package config

import (
	"fmt"
	"strings"
	"testing"
)

// refuses checks that Parse refuses doc with an error line
// "bad.yaml:LINE: PATH: ..." saying reason, LINE being the line marked "#<".
func refuses(t *testing.T, doc, path, reason string) {
	t.Helper()
	line := markedLine(t, doc)
	_, err := Parse("bad.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", doc)
	}
	want := fmt.Sprintf("bad.yaml:%d: %s: ", line, path)
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(l, want) && strings.Contains(l[len(want):], reason) {
			return
		}
	}
	t.Fatalf("no error line starts with %q and says %q; got:\n  %s\nconfig:\n%s", want, reason, strings.ReplaceAll(err.Error(), "\n", "\n  "), doc)
}

// authzRule is a config whose listener's authz has one rule: name r,
// action deny, and the given lines.
func authzRule(lines string) string {
	return listenerWith("authz:\n  rules:\n    - name: r\n      action: deny\n" + indent(lines, 6))
}

// TestParseRefusesAuditBranches covers the validation branches that
// `go test -cover ./proxy/config/` showed no test reaching (issue 21 §3,
// audit of session 8): authorization rules, gRPC route matches, gRPC-Web
// CORS request headers and stats_tags names and regexes.
func TestParseRefusesAuditBranches(t *testing.T) {
	const r0 = "listeners[0].virtual_hosts[0].routes[0]"
	const rule = "listeners[0].authz.rules[0]"
	cases := []struct {
		name, doc, path, reason string
	}{
		// Authorization rules: the rule name goes out in a header.
		{"rule name space", listenerWith("authz:\n  rules:\n    - name: 'a b' #<\n      action: deny\n"), rule + ".name", `rule name "a b": no spaces, commas or semicolons`},
		{"rule name comma", listenerWith("authz:\n  rules:\n    - name: 'a,b' #<\n      action: deny\n"), rule + ".name", "no spaces, commas or semicolons"},
		{"rule name semicolon", listenerWith("authz:\n  rules:\n    - name: 'a;b' #<\n      action: deny\n"), rule + ".name", "no spaces, commas or semicolons"},
		{"empty request principal", authzRule("request_principals:\n  - alice\n  - '' #<\n"), rule + ".request_principals[1]", `empty principal; use "*" for any`},
		{"rule method token", authzRule("methods: ['GE T'] #<\n"), rule + ".methods[0]", `method "GE T" is not an HTTP method name`},
		{"rule method case", authzRule("methods:\n  - GET\n  - get #<\n"), rule + ".methods[1]", `method "get": methods are case-sensitive; write "GET"`},
		{"rule path slash", authzRule("paths: [api/*] #<\n"), rule + ".paths[0]", `path "api/*" must start with "/"`},
		{"rule path stars", authzRule("paths: ['/a/***'] #<\n"), rule + ".paths[0]", `not "***"`},
		{"rule header name", authzRule("headers:\n  - {name: 'x y', exact: a} #<\n"), rule + ".headers[0].name", `header name "x y" has characters a header name cannot have`},
		{"rule header two kinds", authzRule("headers:\n  - {name: x-a, exact: a, prefix: b} #<\n"), rule + ".headers[0]", "set exactly one of exact, prefix, regex, present, absent (found 2)"},
		{"rule port", authzRule("ports: [80, 70000] #<\n"), rule + ".ports[1]", "port 70000 is not a number from 1 to 65535"},

		// gRPC route matches.
		{"grpc service empty", withRoute("- match:\n    grpc: {method: M} #<\n  route: {cluster: c1}\n"), r0 + ".match.grpc.service", `service "": want a fully qualified gRPC service name`},
		{"grpc service slash", withRoute("- match:\n    grpc:\n      service: a/b #<\n  route: {cluster: c1}\n"), r0 + ".match.grpc.service", `service "a/b": want a fully qualified gRPC service name`},
		{"grpc method slash", withRoute("- match:\n    grpc:\n      service: pkg.Svc\n      method: a/b #<\n  route: {cluster: c1}\n"), r0 + ".match.grpc.method", `method "a/b": want a method name`},
		{"grpc and prefix", withRoute("- match:\n    prefix: /x\n    grpc: {service: pkg.Svc} #<\n  route: {cluster: c1}\n"), r0 + ".match.grpc", "grpc replaces prefix, path and regex: set only grpc"},
		{"grpc method and prefix", withRoute("- match:\n    prefix: /x\n    grpc: {service: pkg.Svc, method: M} #<\n  route: {cluster: c1}\n"), r0 + ".match.grpc", "grpc replaces prefix, path and regex"},
		{"grpc and regex", withRoute("- match:\n    regex: '/x.*'\n    grpc: {service: pkg.Svc} #<\n  route: {cluster: c1}\n"), r0 + ".match.grpc", "grpc replaces prefix, path and regex"},

		// gRPC-Web CORS: the request headers a browser may send.
		{"grpc_web allow header", grpcWebListener("cors:\n  allow_origins: ['*']\n  allow_headers: ['x y'] #<"), "listeners[0].grpc_web.cors.allow_headers[0]", `header name "x y" has characters a header name cannot have`},

		// stats_tags.
		{"stats tag name", withFilter("") + "stats_tags:\n  - tag_name: 1v #<\n    regex: '_v=([a-z]+)'\n", "stats_tags[0].tag_name", `tag_name "1v" is not a Prometheus label name`},
		{"stats tag name reserved", withFilter("") + "stats_tags:\n  - tag_name: __v #<\n    regex: '_v=([a-z]+)'\n", "stats_tags[0].tag_name", "is not a Prometheus label name"},
		{"stats tag regex", withFilter("") + "stats_tags:\n  - tag_name: v\n    regex: '_v=([a-z]+' #<\n", "stats_tags[0].regex", "regex: error parsing regexp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { refuses(t, tc.doc, tc.path, tc.reason) })
	}
}

// A path that is not UTF-8 cannot come out of YAML or JSON (both decoders
// replace such bytes), but Validate also runs on configs built in code.
func TestValidateRefusesNonUTF8AuthzPath(t *testing.T) {
	doc := authzRule("paths: [/a] #<\n")
	c, err := Parse("good.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c.Listeners[0].Authz.Rules[0].Paths[0] = "/a\xff"
	err = Validate("good.yaml", []byte(doc), c)
	want := fmt.Sprintf("good.yaml:%d: listeners[0].authz.rules[0].paths[0]: path \"/a\\xff\" is not UTF-8", markedLine(t, doc))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate: %v, want %q", err, want)
	}
}

// A gRPC match becomes a path (method given) or prefix (service only)
// match on a gRPC content type.
func TestGRPCMatchDefaults(t *testing.T) {
	for _, tc := range []struct {
		grpc, path, prefix string
	}{
		{"{service: pkg.Svc, method: Get}", "/pkg.Svc/Get", ""},
		{"{service: pkg.Svc}", "", "/pkg.Svc/"},
	} {
		c, err := Parse("grpc.yaml", []byte(withRoute("- match: {grpc: "+tc.grpc+"}\n  route: {cluster: c1}\n")))
		if err != nil {
			t.Fatalf("%s: %v", tc.grpc, err)
		}
		m := c.Listeners[0].VirtualHosts[0].Routes[0].Match
		if m.Path != tc.path || m.Prefix != tc.prefix || m.Regex != "" {
			t.Errorf("%s: path %q prefix %q regex %q, want path %q prefix %q", tc.grpc, m.Path, m.Prefix, m.Regex, tc.path, tc.prefix)
		}
		if len(m.Headers) != 1 || m.Headers[0] != (HeaderMatcher{Name: "content-type", Prefix: "application/grpc"}) {
			t.Errorf("%s: headers %+v, want only content-type prefix application/grpc", tc.grpc, m.Headers)
		}
	}
}
