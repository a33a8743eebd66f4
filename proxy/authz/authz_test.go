package authz

import (
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
)

func stream(method, path, principal string, port int, hdrs ...string) *filter.Stream {
	req := &fasthttp.Request{}
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Set(hdrs[i], hdrs[i+1])
	}
	s := &filter.Stream{Request: req, Response: &fasthttp.Response{}, Destination: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
	if principal != "" {
		s.TLS = &filter.TLSInfo{MTLS: true, PeerURISAN: principal}
	}
	return s
}

func policy(t testing.TB, def string, m *Metrics, rules ...config.AuthzRule) *Policy {
	t.Helper()
	a := &config.Authz{Default: def, Rules: rules}
	p, err := Compile("inbound", a, m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDenyWinsAndDefaults(t *testing.T) {
	m := NewMetrics()
	p := policy(t, "deny", m,
		config.AuthzRule{Name: "payments", Action: "allow", Principals: []string{"spiffe://td/ns/payments/*"}},
		config.AuthzRule{Name: "jwt-admin", Action: "allow", RequestPrincipals: []string{"issuer/admin*"}, Methods: []string{"POST"}},
		config.AuthzRule{Name: "no-debug", Action: "deny", Paths: []string{"/debug*"}},
		config.AuthzRule{Name: "only-8443-beta", Action: "deny", Ports: []int{9000}, Headers: []config.HeaderMatcher{{Name: "x-beta", Present: true}}},
		config.AuthzRule{Name: "health", Action: "allow", Paths: []string{"/healthz"}},
	)
	cases := []struct {
		name string
		s    *filter.Stream
		want string // "" allowed, else the rule
	}{
		{"namespace wildcard", stream("GET", "/x", "spiffe://td/ns/payments/sa/api", 80), ""},
		{"other namespace", stream("GET", "/x", "spiffe://td/ns/web/sa/api", 80), "default"},
		{"prefix is per segment", stream("GET", "/x", "spiffe://td/ns/payments-evil/sa/api", 80), "default"},
		{"no principal", stream("GET", "/x", "", 80), "default"},
		{"deny wins over allow", stream("GET", "/debug/pprof", "spiffe://td/ns/payments/sa/api", 80), "no-debug"},
		{"deny by port and header", stream("GET", "/x", "spiffe://td/ns/payments/sa/api", 9000, "X-Beta", "1"), "only-8443-beta"},
		{"other port", stream("GET", "/x", "spiffe://td/ns/payments/sa/api", 8443, "X-Beta", "1"), ""},
		{"exact path", stream("GET", "/healthz", "", 80), ""},
		{"exact path is exact", stream("GET", "/healthz/x", "", 80), "default"},
		{"path normalized", stream("GET", "/a/../debug/x", "spiffe://td/ns/payments/sa/api", 80), "no-debug"},
		{"jwt principal + method", stream("POST", "/x", "", 80, "X-Weft-Jwt-Sub", "issuer/admin-1"), ""},
		{"jwt principal wrong method", stream("GET", "/x", "", 80, "X-Weft-Jwt-Sub", "issuer/admin-1"), "default"},
		{"jwt principal mismatch", stream("POST", "/x", "", 80, "X-Weft-Jwt-Sub", "issuer/user"), "default"},
	}
	for _, c := range cases {
		d := p.Check(c.s)
		got := ""
		if d != nil {
			got = d.Rule
			if string(d.Value) != "denied:"+d.Rule {
				t.Errorf("%s: header value %q", c.name, d.Value)
			}
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	if n := count(m, "default"); n != 6 {
		t.Errorf("default denials counted %v, want 6", n)
	}
	if n := count(m, "no-debug"); n != 2 {
		t.Errorf("no-debug denials counted %v, want 2", n)
	}
}

func TestDefaultAllowAndStrip(t *testing.T) {
	p := policy(t, "allow", nil, config.AuthzRule{Name: "block", Action: "deny", Principals: []string{"*"}, Methods: []string{"DELETE"}})
	if d := p.Check(stream("DELETE", "/x", "", 80)); d != nil {
		t.Fatal("'*' matched a peer with no identity")
	}
	if d := p.Check(stream("DELETE", "/x", "spiffe://td/ns/a/sa/b", 80)); d == nil || d.Rule != "block" {
		t.Fatalf("got %v, want block", d)
	}
	if d := p.Check(stream("GET", "/x", "spiffe://td/ns/a/sa/b", 80)); d != nil {
		t.Fatal("default allow denied")
	}
	s := stream("GET", "/x", "", 80, "x-weft-jwt-sub", "forged")
	p.StripRequestPrincipal(&s.Request.Header)
	if v := s.Request.Header.Peek("X-Weft-Jwt-Sub"); v != nil {
		t.Fatalf("forged principal header kept: %q", v)
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	p := policy(t, "deny", NewMetrics(),
		config.AuthzRule{Name: "deny-h", Action: "deny", Headers: []config.HeaderMatcher{{Name: "x-block", Exact: "1"}}},
		config.AuthzRule{Name: "payments", Action: "allow", Principals: []string{"spiffe://td/ns/payments/*"}, Paths: []string{"/api/*"}, Methods: []string{"GET"}},
	)
	ok := stream("GET", "/api/v1", "spiffe://td/ns/payments/sa/api", 80)
	no := stream("GET", "/api/v1", "spiffe://td/ns/web/sa/api", 80)
	if n := testing.AllocsPerRun(200, func() {
		if p.Check(ok) != nil || p.Check(no) == nil {
			panic("wrong decision")
		}
	}); n != 0 {
		t.Fatalf("Check allocates %v per run, want 0", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	p := policy(b, "deny", NewMetrics(),
		config.AuthzRule{Name: "deny-h", Action: "deny", Headers: []config.HeaderMatcher{{Name: "x-block", Exact: "1"}}},
		config.AuthzRule{Name: "payments", Action: "allow", Principals: []string{"spiffe://td/ns/payments/*"}, Paths: []string{"/api/*"}, Methods: []string{"GET"}},
	)
	s := stream("GET", "/api/v1", "spiffe://td/ns/payments/sa/api", 80)
	b.ReportAllocs()
	for b.Loop() {
		if p.Check(s) != nil {
			b.Fatal("denied")
		}
	}
}

// FuzzPolicy checks the matcher's invariants on arbitrary principals,
// paths, methods and header values: no panic; deny wins (a request a deny
// rule matches is never allowed); a wildcard principal pattern matches
// exactly the IDs under its prefix; default deny denies what no allow rule
// matches.
func FuzzPolicy(f *testing.F) {
	f.Add("spiffe://td/ns/payments/sa/api", "/api/v1", "GET", "1", "issuer/admin")
	f.Add("spiffe://td/ns/payments", "/debug", "POST", "", "")
	f.Add("", "/%2e%2e/debug", "DELETE", "0", "*")
	f.Add("spiffe://td/ns/payments-x/sa/a", "//api", "get", "\x00", "issuer/admin\xff")
	f.Fuzz(func(t *testing.T, principal, path, method, hv, jwt string) {
		p := policy(t, "deny", nil,
			config.AuthzRule{Name: "deny-debug", Action: "deny", Paths: []string{"/debug*"}},
			config.AuthzRule{Name: "deny-h", Action: "deny", Headers: []config.HeaderMatcher{{Name: "x-block", Exact: "1"}}},
			config.AuthzRule{Name: "payments", Action: "allow", Principals: []string{"spiffe://td/ns/payments/*"}},
			config.AuthzRule{Name: "admin", Action: "allow", RequestPrincipals: []string{"issuer/admin*"}},
		)
		req := &fasthttp.Request{}
		req.Header.SetMethod(method)
		req.SetRequestURI(path)
		req.Header.Set("X-Block", hv)
		req.Header.Set("X-Weft-Jwt-Sub", jwt)
		s := &filter.Stream{Request: req, Destination: &net.TCPAddr{Port: 80}}
		if principal != "" {
			s.TLS = &filter.TLSInfo{MTLS: true, PeerURISAN: principal}
		}
		d := p.Check(s)
		normPath := string(req.URI().Path())
		block := string(req.Header.Peek("X-Block")) == "1"
		debug := len(normPath) >= 6 && normPath[:6] == "/debug"
		if (debug || block) && (d == nil || (d.Rule != "deny-debug" && d.Rule != "deny-h")) {
			t.Fatalf("a deny rule matched but the decision is %v", d)
		}
		wild := len(principal) > len("spiffe://td/ns/payments/") && principal[:len("spiffe://td/ns/payments/")] == "spiffe://td/ns/payments/"
		gotJWT := string(req.Header.Peek("X-Weft-Jwt-Sub"))
		admin := len(gotJWT) >= 12 && gotJWT[:12] == "issuer/admin"
		if !debug && !block {
			if allowed := d == nil; allowed != (wild || admin) {
				t.Fatalf("principal %q jwt %q: allowed=%v, want %v", principal, gotJWT, allowed, wild || admin)
			}
		}
	})
}

func count(m *Metrics, rule string) float64 {
	var mm dto.Metric
	_ = m.denied.WithLabelValues("inbound", rule).Write(&mm)
	return mm.GetCounter().GetValue()
}

// TestRequestPrincipalPatterns covers the JWT principal patterns: exact,
// PREFIX* (which matches the prefix itself) and "*", none of which match a
// request without a principal.
func TestRequestPrincipalPatterns(t *testing.T) {
	cases := []struct {
		pat, sub string
		want     bool
	}{
		{"issuer/admin*", "issuer/admin-1", true},
		{"issuer/admin*", "issuer/admin", true},
		{"issuer/admin*", "issuer/admi", false},
		{"issuer/admin*", "other/admin", false},
		{"issuer/admin", "issuer/admin", true},
		{"issuer/admin", "issuer/admin-1", false},
		{"*", "anyone", true},
		{"*", "", false},
		{"issuer/*", "", false},
	}
	for _, c := range cases {
		p := policy(t, "deny", nil, config.AuthzRule{Name: "jwt", Action: "allow", RequestPrincipals: []string{c.pat}})
		var hdrs []string
		if c.sub != "" {
			hdrs = []string{"X-Weft-Jwt-Sub", c.sub}
		}
		if got := p.Check(stream("GET", "/x", "", 80, hdrs...)) == nil; got != c.want {
			t.Errorf("pattern %q, principal %q: allowed %v, want %v", c.pat, c.sub, got, c.want)
		}
	}
}

// TestCanonicalHeaderName checks header names are written as fasthttp stores
// them, so rules find headers on a server that does not normalise names.
func TestCanonicalHeaderName(t *testing.T) {
	for in, want := range map[string]string{
		"x-weft-jwt-sub": "X-Weft-Jwt-Sub",
		"X-BETA":         "X-Beta",
		"a":              "A",
		"z":              "Z",
		"a-z":            "A-Z",
		"x_env":          "X_env",
		"1a-b":           "1a-B",
	} {
		if got := string(canonical(in)); got != want {
			t.Errorf("canonical(%q) = %q, want %q", in, got, want)
		}
	}

	p := policy(t, "allow", nil, config.AuthzRule{Name: "beta", Action: "deny", Headers: []config.HeaderMatcher{{Name: "x-beta", Exact: "1"}}})
	s := stream("GET", "/x", "", 80)
	s.Request.Header.DisableNormalizing()
	s.Request.Header.Set("X-Beta", "1")
	if d := p.Check(s); d == nil || d.Rule != "beta" {
		t.Errorf("X-Beta: 1 on a request that keeps names as sent: got %v, want denied by beta", d)
	}
}

// TestHeaderRegex: a header regex must match the whole value, never
// matches a missing header, and a bad one is refused when compiling.
func TestHeaderRegex(t *testing.T) {
	p := policy(t, "allow", nil, config.AuthzRule{Name: "canary", Action: "deny", Headers: []config.HeaderMatcher{{Name: "x-canary", Regex: "v[0-9]+"}}})
	cases := []struct {
		hdrs   []string
		denied bool
	}{
		{[]string{"X-Canary", "v12"}, true},
		{[]string{"X-Canary", "v12-beta"}, false},
		{[]string{"X-Canary", "xv1"}, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := p.Check(stream("GET", "/x", "", 80, c.hdrs...)) != nil; got != c.denied {
			t.Errorf("headers %v: denied %v, want %v", c.hdrs, got, c.denied)
		}
	}
	_, err := Compile("inbound", &config.Authz{Default: "allow", Rules: []config.AuthzRule{{Name: "bad", Action: "deny",
		Headers: []config.HeaderMatcher{{Name: "x", Regex: "(a"}}}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "headers[0]") {
		t.Errorf("bad header regex: got %v, want an error naming headers[0]", err)
	}
}

func TestPathGlobs(t *testing.T) {
	p := policy(t, "deny", nil, config.AuthzRule{Name: "g", Action: "allow", Paths: []string{"/users/*/orders", "/v1/**/status", "/files/*.txt"}})
	for path, want := range map[string]bool{
		"/users/7/orders":       true,
		"/users/7/8/orders":     false, // "*" stays within a segment
		"/users/7/orders/x":     false,
		"/v1/status":            false, // "/**/" needs the slashes around it
		"/v1/a/status":          true,
		"/v1/a/b/c/status":      true,
		"/files/a.txt":          true,
		"/files/dir/a.txt":      false,
		"/files/a.txt.exe":      false,
		"/users/7/orders?x=1":   true, // the query is not the path
		"/users/%2e%2e/orders":  false,
		"/users/7/../7/orders":  true, // normalized before matching
		"/users/7/orders/../..": false,
	} {
		if got := p.Check(stream("GET", path, "", 80)) == nil; got != want {
			t.Errorf("%s: allowed %v, want %v", path, got, want)
		}
	}
	ok, no := stream("GET", "/v1/a/b/status", "", 80), stream("GET", "/users/7/8/orders", "", 80)
	if n := testing.AllocsPerRun(100, func() {
		if p.Check(ok) != nil || p.Check(no) == nil {
			panic("wrong decision")
		}
	}); n != 0 && !raceEnabled {
		t.Fatalf("Check with globs allocates %v per run", n)
	}
	// Many stars against a long path: linear, not backtracking.
	deep := policy(t, "deny", nil, config.AuthzRule{Name: "d", Action: "allow", Paths: []string{"/**a**a**a**a**a**a**b"}})
	long := stream("GET", "/"+strings.Repeat("a", 20000), "", 80)
	if deep.Check(long) == nil {
		t.Fatal("matched a path without b")
	}
}

// TestDryRun checks that a dry-run policy refuses nothing, counts what it
// would refuse in its own metric, and is consulted only for requests the
// enforced policy allows.
func TestDryRun(t *testing.T) {
	m := NewMetrics()
	a := &config.Authz{Default: "allow",
		Rules: []config.AuthzRule{{Name: "no-delete", Action: "deny", Methods: []string{"DELETE"}}},
		DryRun: &config.DryRunAuthz{Default: "deny", Rules: []config.AuthzRule{
			{Name: "admin", Action: "deny", Paths: []string{"/admin*"}},
			{Name: "reads", Action: "allow", Methods: []string{"GET"}},
		}}}
	p, err := Compile("inbound", a, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path, deny, dry string
	}{
		{"GET", "/x", "", ""},
		{"GET", "/admin/users", "", "admin"},
		{"POST", "/x", "", "default"},
		{"DELETE", "/x", "no-delete", ""}, // refused for real: not a dry-run matter
	} {
		s := stream(c.method, c.path, "", 80)
		d := p.Check(s)
		if (d == nil) != (c.deny == "") || (d != nil && d.Rule != c.deny) {
			t.Errorf("%s %s: denied %v, want %q", c.method, c.path, d, c.deny)
			continue
		}
		if d != nil {
			continue
		}
		dd := p.DryRun(s)
		if (dd == nil) != (c.dry == "") || (dd != nil && dd.Rule != c.dry) {
			t.Errorf("%s %s: dry run %v, want %q", c.method, c.path, dd, c.dry)
		}
	}
	var dm dto.Metric
	if err := m.dryRun.WithLabelValues("inbound", "admin").Write(&dm); err != nil || dm.GetCounter().GetValue() != 1 {
		t.Errorf("dry-run admin count %v, %v", dm.GetCounter().GetValue(), err)
	}
	if n := count(m, "admin"); n != 0 {
		t.Errorf("a dry-run denial counted as a real one: %v", n)
	}
}

// FuzzPathGlob checks the compiled glob against a plain backtracking
// matcher (fine for short inputs) on any pattern and path.
func FuzzPathGlob(f *testing.F) {
	f.Add("/users/*/orders", "/users/7/orders")
	f.Add("/v1/**/status", "/v1/a/b/status")
	f.Add("/a*b**c", "/axb/y/zc")
	f.Add("/[x]?.(*)", "/[x]?.(yy)")
	f.Fuzz(func(t *testing.T, glob, path string) {
		if len(glob) > 24 || len(path) > 48 || !utf8.ValidString(glob) {
			return
		}
		if got, want := globRegexp(glob).MatchString(path), refGlob(glob, path); got != want {
			t.Fatalf("glob %q path %q: matched %v, want %v", glob, path, got, want)
		}
	})
}

func refGlob(pat, s string) bool {
	if pat == "" {
		return s == ""
	}
	if strings.HasPrefix(pat, "**") {
		for i := 0; i <= len(s); i++ {
			if refGlob(pat[2:], s[i:]) {
				return true
			}
		}
		return false
	}
	if pat[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if refGlob(pat[1:], s[i:]) {
				return true
			}
			if i < len(s) && s[i] == '/' {
				return false
			}
		}
		return false
	}
	return s != "" && s[0] == pat[0] && refGlob(pat[1:], s[1:])
}

// BenchmarkCheckPaths compares a prefix rule with the glob that says the
// same, and a glob with a star per segment.
func BenchmarkCheckPaths(b *testing.B) {
	for _, c := range []struct{ name, pattern, path string }{
		{"prefix", "/api/*", "/api/v1/users/7/orders"},
		{"glob-deep", "/api/**", "/api/v1/users/7/orders"},
		{"glob-segments", "/api/*/users/*/orders", "/api/v1/users/7/orders"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := policy(b, "deny", nil, config.AuthzRule{Name: "r", Action: "allow", Paths: []string{c.pattern}})
			s := stream("GET", c.path, "", 80)
			b.ReportAllocs()
			for b.Loop() {
				if p.Check(s) != nil {
					b.Fatal("denied")
				}
			}
		})
	}
}
