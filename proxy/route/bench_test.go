package route

import (
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// benchListener is a realistic table: 5 virtual hosts of 10 routes each,
// mixing prefixes, exact paths, a regex, methods, headers and query params.
func benchListener() config.Listener {
	l := config.Listener{Name: "bench"}
	domains := [][]string{
		{"svc0.mesh.local", "svc0"},
		{"svc1.mesh.local", "svc1"},
		{"*.api.mesh.local"},
		{"static.*"},
		{"*"},
	}
	for v := 0; v < 5; v++ {
		vh := config.VirtualHost{Name: fmt.Sprintf("vh%d", v), Domains: domains[v]}
		for r := 0; r < 10; r++ {
			cr := config.Route{Name: fmt.Sprintf("r%d", r), Route: &config.RouteAction{WeightedClusters: []config.WeightedCluster{
				{Cluster: "a", Weight: 90}, {Cluster: "b", Weight: 10},
			}}}
			switch r % 5 {
			case 0:
				cr.Match = config.Match{Prefix: fmt.Sprintf("/v%d/items", r)}
			case 1:
				cr.Match = config.Match{Path: fmt.Sprintf("/v%d/health", r), Methods: []string{"GET", "HEAD"}}
			case 2:
				cr.Match = config.Match{Prefix: fmt.Sprintf("/v%d/", r), Headers: []config.HeaderMatcher{{Name: "x-canary", Exact: "true"}}}
			case 3:
				cr.Match = config.Match{Regex: fmt.Sprintf("/v%d/users/[0-9]+/orders", r)}
			case 4:
				cr.Match = config.Match{Prefix: fmt.Sprintf("/v%d/search", r), Query: []config.HeaderMatcher{{Name: "q", Present: true}}}
			}
			if r == 9 {
				cr.Match = config.Match{Prefix: "/"}
			}
			vh.Routes = append(vh.Routes, cr)
		}
		l.VirtualHosts = append(l.VirtualHosts, vh)
	}
	return l
}

func BenchmarkMatch(b *testing.B) {
	tbl, err := Compile(benchListener(), map[string]int{"a": 0, "b": 1})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, target, host string
		headers            []string
		want               string
	}{
		{"first", "/v0/items/17", "svc0.mesh.local", nil, "vh0/r0"},
		{"last", "/anything/else", "unknown.example:8080", []string{"X-Canary", "false"}, "vh4/r9"},
		{"regex", "/v3/users/12345/orders", "orders.api.mesh.local", nil, "vh2/r3"},
		{"header", "/v7/x", "SVC1", []string{"X-Canary", "true"}, "vh1/r7"},
		{"query", "/v4/search?page=2&q=shoes", "static.cdn", nil, "vh3/r4"},
	}
	for _, c := range cases {
		req := request(b, "GET", c.target, c.host, c.headers...)
		if got := matchName(tbl.Match(req)); got != c.want {
			b.Fatalf("%s: matched %s, want %s", c.name, got, c.want)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match(req)
			}
		})
	}
}

func BenchmarkPickCluster(b *testing.B) {
	tbl, err := Compile(benchListener(), map[string]int{"a": 0, "b": 1})
	if err != nil {
		b.Fatal(err)
	}
	r := tbl.Routes()[0]
	var x uint64 = 1
	b.ReportAllocs()
	for b.Loop() {
		x = x*6364136223846793005 + 1442695040888963407
		r.PickCluster(x)
	}
}

// BenchmarkMatchFromWire includes what a server does per request before
// routing: reading the request, then the lazy URI, query and cookie parsing
// Match triggers.
func BenchmarkMatchFromWire(b *testing.B) {
	tbl, _ := loadTable(b, "routes.yaml")
	raw := []byte("DELETE /all?force=yes HTTP/1.1\r\nHost: api.local\r\nUser-Agent: bench\r\nX-Env: prod\r\nCookie: admin=1; session=deadbeef\r\n\r\n")
	var req fasthttp.Request
	rd := newRewinder(raw)
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		if err := req.Read(rd.rewind()); err != nil {
			b.Fatal(err)
		}
		if tbl.Match(&req) == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkApplyRequest measures a prefix rewrite, a host rewrite and a
// header mutation on a request read from the wire.
func BenchmarkApplyRequest(b *testing.B) {
	tbl, err := Compile(config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{{
		Name: "v", Domains: []string{"*"}, Routes: []config.Route{{
			Match: config.Match{Prefix: "/orders"},
			Route: &config.RouteAction{Cluster: "a", PrefixRewrite: "/v1/orders", HostRewrite: "orders.internal"},
			RequestHeaders: config.HeaderMutation{
				Remove: []string{"x-internal-token"},
				Set:    []config.Header{{Name: "x-route", Value: "orders"}},
				Add:    []config.Header{{Name: "x-forwarded-by", Value: "weft"}},
			},
		}},
	}}}, map[string]int{"a": 0})
	if err != nil {
		b.Fatal(err)
	}
	raw := []byte("GET /orders/42?x=1 HTTP/1.1\r\nHost: api.local\r\nX-Internal-Token: t\r\n\r\n")
	var req fasthttp.Request
	rd := newRewinder(raw)
	b.ReportAllocs()
	for b.Loop() {
		req.Reset()
		if err := req.Read(rd.rewind()); err != nil {
			b.Fatal(err)
		}
		tbl.Match(&req).ApplyRequest(&req)
	}
}
