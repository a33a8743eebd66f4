package route

import (
	"bufio"
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// loadTable compiles the first listener of a testdata config, with clusters
// indexed in config order.
func loadTable(t testing.TB, file string) (*Table, *config.Config) {
	t.Helper()
	c, err := config.Load(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := Compile(c.Listeners[0], clusterIndex(c))
	if err != nil {
		t.Fatal(err)
	}
	return tbl, c
}

func clusterIndex(c *config.Config) map[string]int {
	idx := map[string]int{}
	for i, cl := range c.Clusters {
		idx[cl.Name] = i
	}
	return idx
}

// request builds a request the way a fasthttp server hands one over:
// parsed from the wire.
func request(t testing.TB, method, target, host string, headers ...string) *fasthttp.Request {
	t.Helper()
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	if host != "" {
		b.WriteString("Host: " + host + "\r\n")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		b.WriteString(headers[i] + ": " + headers[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	req := &fasthttp.Request{}
	if err := req.Read(bufio.NewReader(strings.NewReader(b.String()))); err != nil {
		t.Fatalf("reading %q: %v", b.String(), err)
	}
	return req
}

func matchName(r *Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.VirtualHost + "/" + r.Name
}

func TestMatch(t *testing.T) {
	tbl, _ := loadTable(t, "routes.yaml")
	cases := []struct {
		name, method, target, host string
		headers                    []string
		want                       string
	}{
		// Virtual host precedence.
		{"exact domain", "GET", "/x", "api.local", nil, "api/catch-all"},
		{"exact domain ignores case", "GET", "/x", "API.LOCAL", nil, "api/catch-all"},
		{"domain written in upper case", "GET", "/x", "api2.local", nil, "api/catch-all"},
		{"port ignored", "GET", "/x", "api.local:8080", nil, "api/catch-all"},
		{"domain with port wins for its port", "GET", "/x", "api.local:8443", nil, "api-8443/r"},
		{"trailing dot", "GET", "/x", "api.local.", nil, "api/catch-all"},
		{"exact beats suffix", "GET", "/x", "api.mesh.local", nil, "api/catch-all"},
		{"longest suffix", "GET", "/x", "a.eu.mesh.local", nil, "suffix-long/r"},
		{"suffix", "GET", "/x", "eu.mesh.local", nil, "suffix/r"},
		{"suffix with port", "GET", "/x", "b.Mesh.Local:9000", nil, "suffix/r"},
		{"suffix needs a label", "GET", "/x", "mesh.local", nil, "any/r"},
		{"longest prefix", "GET", "/x", "static.cdn.example", nil, "prefix-long/r"},
		{"prefix", "GET", "/x", "static.example", nil, "prefix/r"},
		{"suffix beats prefix", "GET", "/x", "static.mesh.local", nil, "suffix/r"},
		{"prefix needs more", "GET", "/x", "static.", nil, "any/r"},
		{"any", "GET", "/x", "elsewhere.example", nil, "any/r"},
		{"ipv6 host", "GET", "/x", "[::1]:8080", nil, "any/r"},

		// Paths.
		{"exact path", "GET", "/exact", "api.local", nil, "api/exact-path"},
		{"exact path with query", "GET", "/exact?a=b", "api.local", nil, "api/exact-path"},
		{"exact path is exact", "GET", "/exact/", "api.local", nil, "api/catch-all"},
		{"exact path decoded", "GET", "/%65xact", "api.local", nil, "api/exact-path"},
		{"exact path normalized", "GET", "/api/../exact", "api.local", nil, "api/exact-path"},
		{"regex", "GET", "/users/42", "api.local", nil, "api/regex"},
		{"regex matches whole path", "GET", "/users/42/x", "api.local", nil, "api/catch-all"},
		{"regex no match", "GET", "/users/abc", "api.local", nil, "api/catch-all"},
		{"prefix", "GET", "/api/v1", "api.local", nil, "api/prefix"},
		{"prefix is a string prefix", "GET", "/apix", "api.local", nil, "api/prefix"},

		// Methods.
		{"method listed", "POST", "/m", "api.local", nil, "api/methods"},
		{"method listed 2", "PUT", "/m/1", "api.local", nil, "api/methods"},
		{"method not listed", "GET", "/m", "api.local", nil, "api/catch-all"},

		// Headers.
		{"header exact", "GET", "/h/", "api.local", []string{"X-Env", "prod"}, "api/header-exact"},
		{"header name case", "GET", "/h/", "api.local", []string{"x-ENV", "prod"}, "api/header-exact"},
		{"header value case", "GET", "/h/", "api.local", []string{"x-env", "PROD"}, "api/catch-all"},
		{"header prefix", "GET", "/h/", "api.local", []string{"x-env", "staging"}, "api/header-prefix"},
		{"header regex", "GET", "/h/", "api.local", []string{"x-env", "dev-abc"}, "api/header-regex"},
		{"header regex whole value", "GET", "/h/", "api.local", []string{"x-env", "dev-abc1"}, "api/catch-all"},
		{"header present", "GET", "/h/", "api.local", []string{"x-debug", "1"}, "api/header-present"},
		{"header absent", "GET", "/h/", "api.local", nil, "api/header-absent"},
		{"header empty counts as absent", "GET", "/h/", "api.local", []string{"x-env", ""}, "api/header-absent"},
		{"header inverted, other value", "GET", "/h2", "api.local", []string{"x-env", "dev"}, "api/header-invert"},
		{"header inverted, missing", "GET", "/h2", "api.local", nil, "api/header-invert"},
		{"header inverted, value", "GET", "/h2", "api.local", []string{"x-env", "prod"}, "api/catch-all"},
		{"two headers", "GET", "/h3", "api.local", []string{"x-a", "1", "x-b", "2"}, "api/header-two"},
		{"two headers, one", "GET", "/h3", "api.local", []string{"x-a", "1"}, "api/catch-all"},

		// Query parameters.
		{"query exact", "GET", "/q?v=2", "api.local", nil, "api/query-exact"},
		{"query decoded", "GET", "/q?x=1&v=%32", "api.local", nil, "api/query-exact"},
		{"query present", "GET", "/q?v=3&debug=1", "api.local", nil, "api/query-present"},
		{"query other value", "GET", "/q?v=3", "api.local", nil, "api/catch-all"},
		{"query in path does not count", "GET", "/q/v=2", "api.local", nil, "api/catch-all"},

		// Cookies.
		{"cookie regex", "GET", "/c", "api.local", []string{"Cookie", "a=b; session=deadbeef"}, "api/cookie"},
		{"cookie regex fails", "GET", "/c", "api.local", []string{"Cookie", "session=xyz"}, "api/catch-all"},
		{"cookie absent", "GET", "/c", "api.local", []string{"Cookie", "other=1"}, "api/cookie-absent"},
		{"no cookie header", "GET", "/c", "api.local", nil, "api/cookie-absent"},

		// Everything at once.
		{"all conditions", "DELETE", "/all?force=yes", "api.local", []string{"x-env", "prod", "Cookie", "admin=1"}, "api/all-together"},
		{"all but the cookie", "DELETE", "/all?force=yes", "api.local", []string{"x-env", "prod"}, "api/catch-all"},
		{"all but the method", "GET", "/all?force=yes", "api.local", []string{"x-env", "prod", "Cookie", "admin=1"}, "api/catch-all"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request(t, tc.method, tc.target, tc.host, tc.headers...)
			if got := matchName(tbl.Match(req)); got != tc.want {
				t.Fatalf("%s %s Host %q %v: got %s, want %s", tc.method, tc.target, tc.host, tc.headers, got, tc.want)
			}
		})
	}
}

func TestMatchRequestBuiltInCode(t *testing.T) {
	// A request built with SetRequestURI has no Host header until it is
	// written; the URI's host counts.
	tbl, _ := loadTable(t, "routes.yaml")
	var req fasthttp.Request
	req.SetRequestURI("http://API.mesh.local/users/7")
	if got := matchName(tbl.Match(&req)); got != "api/regex" {
		t.Fatalf("got %s", got)
	}
}

func TestMatchNoVirtualHostIsNil(t *testing.T) {
	tbl, err := Compile(config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{{
		Name: "only", Domains: []string{"a.local"},
		Routes: []config.Route{{Match: config.Match{Path: "/x"}, DirectResponse: &config.DirectResponse{Status: 200}}},
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := tbl.Match(request(t, "GET", "/x", "b.local")); r != nil {
		t.Errorf("unknown host matched %s", matchName(r))
	}
	if r := tbl.Match(request(t, "GET", "/y", "a.local")); r != nil {
		t.Errorf("unknown path matched %s", matchName(r))
	}
	if r := tbl.Match(request(t, "GET", "/x", "a.local")); r == nil || r.Name != "#0" {
		t.Errorf("got %s, want only/#0", matchName(r))
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tbl, _ := loadTable(t, "routes.yaml")
	reqs := map[string]*fasthttp.Request{
		"catch-all":  request(t, "GET", "/x/y/z", "api.local:8080"),
		"regex":      request(t, "GET", "/users/12345", "API.local"),
		"headers":    request(t, "GET", "/h/", "api.local", "x-env", "dev-abc"),
		"query":      request(t, "GET", "/q?a=1&debug=1", "api.local"),
		"cookie":     request(t, "GET", "/c", "api.local", "Cookie", "a=b; session=deadbeef"),
		"everything": request(t, "DELETE", "/all?force=yes", "api.local", "x-env", "prod", "Cookie", "admin=1"),
		"suffix":     request(t, "GET", "/", "x.eu.mesh.local"),
		"prefix":     request(t, "GET", "/", "static.cdn.example"),
		"any":        request(t, "GET", "/", "nowhere.example"),
	}
	for name, req := range reqs {
		if tbl.Match(req) == nil {
			t.Fatalf("%s: no match", name)
		}
		if n := testing.AllocsPerRun(200, func() { tbl.Match(req) }); n != 0 {
			t.Errorf("Match(%s) allocates %v times", name, n)
		}
	}

	// And for a request read fresh from the wire each time, as a server
	// reuses one Request per connection: the lazy URI, query and cookie
	// parsing must not allocate in steady state either.
	raw := []byte("DELETE /all?force=yes HTTP/1.1\r\nHost: api.local\r\nX-Env: prod\r\nCookie: admin=1\r\n\r\n")
	var req fasthttp.Request
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	var got *Route
	n := testing.AllocsPerRun(200, func() {
		req.Reset()
		rd.Reset(raw)
		br.Reset(rd)
		if err := req.Read(br); err != nil {
			panic(err)
		}
		got = tbl.Match(&req)
	})
	if got == nil || got.Name != "all-together" {
		t.Fatalf("got %s", matchName(got))
	}
	if n != 0 {
		t.Errorf("read+Match allocates %v times", n)
	}

	split := tbl.Match(request(t, "GET", "/users/1", "api.local"))
	var seed uint64 = 1
	if n := testing.AllocsPerRun(200, func() { seed = seed*6364136223846793005 + 1; split.PickCluster(seed) }); n != 0 {
		t.Errorf("PickCluster allocates %v times", n)
	}
}

func TestCompileErrors(t *testing.T) {
	direct := &config.DirectResponse{Status: 200}
	vh := func(domains []string, routes ...config.Route) config.VirtualHost {
		return config.VirtualHost{Name: "v", Domains: domains, Routes: routes}
	}
	cases := []struct {
		name string
		l    config.Listener
		want string
	}{
		{"unknown cluster", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"*"},
			config.Route{Name: "r", Route: &config.RouteAction{Cluster: "nope"}})}},
			`listener "l": virtual host "v": route "r": cluster "nope" is not in the snapshot`},
		{"unknown mirror", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"*"},
			config.Route{Route: &config.RouteAction{Cluster: "a", Mirror: &config.Mirror{Cluster: "m"}}})}},
			`route "#0": mirror: cluster "m" is not in the snapshot`},
		{"bad regex", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"*"},
			config.Route{Match: config.Match{Regex: "(a"}, DirectResponse: direct})}},
			`route "#0": match: regex "(a" (Go RE2 syntax): error parsing regexp: missing closing )`},
		{"bad header regex", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"*"},
			config.Route{Match: config.Match{Headers: []config.HeaderMatcher{{Name: "x", Regex: "a**"}}}, DirectResponse: direct})}},
			`match: header 0 ("x"): regex "a**"`},
		{"two actions", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"*"},
			config.Route{Redirect: &config.Redirect{Host: "x"}, DirectResponse: direct})}},
			`set exactly one of route, redirect, direct_response`},
		{"duplicate domain", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{
			vh([]string{"a.local"}, config.Route{DirectResponse: direct}),
			{Name: "w", Domains: []string{"A.local"}, Routes: []config.Route{{DirectResponse: direct}}}}},
			`virtual host "w": domain "a.local": already used by virtual host "v"`},
		{"middle wildcard", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"a.*.b"}, config.Route{DirectResponse: direct})}},
			`domain "a.*.b": a wildcard must be at the start or the end`},
		{"prefix rewrite with regex", config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{vh([]string{"*"},
			config.Route{Match: config.Match{Regex: "/a"}, Route: &config.RouteAction{Cluster: "a", PrefixRewrite: "/b"}})}},
			`prefix_rewrite needs a prefix or path match`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.l, map[string]int{"a": 0})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

// TestHostLookup covers the virtual host choice on the edges of its rules:
// case folding of every letter from A to Z, a wildcard needing at least one
// character in its place, and an exact domain with a port beating the same
// name without one.
func TestHostLookup(t *testing.T) {
	direct := []config.Route{{DirectResponse: &config.DirectResponse{Status: 200}}}
	vhosts := func(domains ...[]string) config.Listener {
		l := config.Listener{Name: "l"}
		for _, d := range domains {
			l.VirtualHosts = append(l.VirtualHosts, config.VirtualHost{Name: d[0], Domains: d, Routes: direct})
		}
		return l
	}
	names := vhosts([]string{"alpha"}, []string{"zulu"}, []string{"api.local"}, []string{"*.local"}, []string{"api.*"}, []string{"*"})
	// Only domains with a port, so nothing else turns the port lookup on.
	ports := vhosts([]string{"api.local:8080"}, []string{"*"})
	canary := vhosts([]string{"*-canary"}, []string{"*"})
	cases := []struct {
		l    config.Listener
		host string
		want string
	}{
		{names, "alpha", "alpha"},
		{names, "Alpha", "alpha"}, // the only capital is an A
		{names, "Zulu", "zulu"},   // the only capital is a Z
		{names, "ZULU", "zulu"},
		{names, "API.LOCAL", "api.local"},
		{names, "x.local", "*.local"},
		{names, ".local", "*"}, // "*.local" needs a label before the dot
		{names, "api.eu", "api.*"},
		{names, "api..", "*"}, // "api.*" needs something after the dot ("api.." is "api." once the root dot goes)
		{names, "api.local.", "api.local"},
		{ports, "api.local:8080", "api.local:8080"},
		{ports, "API.LOCAL:8080", "api.local:8080"},
		{ports, "api.local:9090", "*"},
		{ports, "api.local", "*"},
		// Only digits make a port: a suffix wildcard sees anything else
		// after the colon, as in Envoy (the SDK's http_routing example
		// appends "-canary" to "localhost:18000").
		{canary, "localhost:18000-canary", "*-canary"},
		{canary, "localhost:18000", "*"},
		{canary, "a-canary:80", "*-canary"},
	}
	for _, c := range cases {
		tbl, err := Compile(c.l, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := tbl.Match(request(t, "GET", "/", c.host)); got == nil || got.VirtualHost != c.want {
			t.Errorf("Host %q: got %s, want %s/#0", c.host, matchName(got), c.want)
		}
	}
}

// TestStripPort pins what counts as a port in a Host, IPv6 literals included.
func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"a.local:80": "a.local",
		"a.local":    "a.local",
		"[::1]:80":   "[::1]",
		"[::1]":      "[::1]",
		"[fe80::1]:": "[fe80::1]",
		"::1":        "::1",
		"fe80::1":    "fe80::1",
		":80":        "",
		"a:8000-x":   "a:8000-x",
	} {
		if got := string(stripPort([]byte(in))); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCanonicalHeader checks header names are written as fasthttp stores
// them, which is what a header matcher looks up when a server does not
// normalise names.
func TestCanonicalHeader(t *testing.T) {
	for in, want := range map[string]string{
		"x-user-id": "X-User-Id",
		"X-USER-ID": "X-User-Id",
		"a":         "A",
		"z":         "Z",
		"a-z":       "A-Z",
		"x_env":     "X_env",
		"1a-b":      "1a-B",
		"":          "",
	} {
		if got := canonicalHeader(in); got != want {
			t.Errorf("canonicalHeader(%q) = %q, want %q", in, got, want)
		}
	}

	tbl := compileOne(t,
		config.Route{Name: "user", Match: config.Match{Headers: []config.HeaderMatcher{{Name: "x-user-id", Exact: "7"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		config.Route{Name: "other", DirectResponse: &config.DirectResponse{Status: 404}},
	)
	var req fasthttp.Request
	req.Header.DisableNormalizing()
	raw := "GET / HTTP/1.1\r\nHost: a\r\nX-User-Id: 7\r\n\r\n"
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if got := matchName(tbl.Match(&req)); got != "v/user" {
		t.Errorf("X-User-Id: 7 without normalising: got %s, want v/user", got)
	}
}

// TestValueMatchEdges: a regex never matches a missing value, even one that
// matches the empty string.
func TestValueMatchEdges(t *testing.T) {
	tbl := compileOne(t,
		config.Route{Name: "any-opt", Match: config.Match{Headers: []config.HeaderMatcher{{Name: "x-opt", Regex: ".*"}}}, DirectResponse: &config.DirectResponse{Status: 200}},
		config.Route{Name: "other", DirectResponse: &config.DirectResponse{Status: 404}},
	)
	cases := []struct {
		headers []string
		want    string
	}{
		{nil, "v/other"},
		{[]string{"X-Opt", "1"}, "v/any-opt"},
	}
	for _, c := range cases {
		if got := matchName(tbl.Match(request(t, "GET", "/", "a", c.headers...))); got != c.want {
			t.Errorf("headers %v: got %s, want %s", c.headers, got, c.want)
		}
	}
}

// TestCompileMatchErrors covers the match errors TestCompileErrors does not:
// two path matches at once, and a bad cookie regex; a regex error names the
// pattern as written, not the anchored form compiled.
func TestCompileMatchErrors(t *testing.T) {
	direct := &config.DirectResponse{Status: 200}
	cases := []struct {
		name  string
		match config.Match
		want  string
	}{
		{"prefix and path", config.Match{Prefix: "/a", Path: "/b"}, "set only one of prefix, path, regex"},
		{"path and regex", config.Match{Path: "/a", Regex: "/b"}, "set only one of prefix, path, regex"},
		{"prefix and regex", config.Match{Prefix: "/a", Regex: "/b"}, "set only one of prefix, path, regex"},
		{"regex as written", config.Match{Regex: "(a"}, "missing closing ): `(a`"},
		{"bad cookie regex", config.Match{Cookies: []config.HeaderMatcher{{Name: "s", Regex: "(x"}}}, `match: cookie 0 ("s"): regex "(x"`},
		{"bad query regex", config.Match{Query: []config.HeaderMatcher{{Name: "q", Regex: "(x"}}}, `match: query 0 ("q"): regex "(x"`},
		{"cookie with two tests", config.Match{Cookies: []config.HeaderMatcher{{Name: "s", Exact: "a", Present: true}}}, `match: cookie 0 ("s"): needs a name and exactly one of`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{{Name: "v", Domains: []string{"*"},
				Routes: []config.Route{{Match: tc.match, DirectResponse: direct}}}}}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant it to contain %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "^(?:") {
				t.Errorf("error shows the anchored regex: %v", err)
			}
		})
	}
}
