package route

import (
	"bufio"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// compileOne compiles a listener with one virtual host ("*") holding routes.
func compileOne(t *testing.T, routes ...config.Route) *Table {
	t.Helper()
	tbl, err := Compile(config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{{
		Name: "v", Domains: []string{"*"}, Routes: routes,
	}}}, map[string]int{"a": 0, "b": 1, "c": 2, "shadow": 3})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func TestPickClusterDistribution(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
	}{
		{"90/10", []int{90, 10}},
		{"50/30/20", []int{50, 30, 20}},
		{"1/99", []int{1, 99}},
		{"uneven total", []int{1, 1, 1}}, // Compile does not insist on 100
	}
	names := []string{"a", "b", "c"}
	const draws = 100_000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var wc []config.WeightedCluster
			total := 0
			for i, w := range tc.weights {
				wc = append(wc, config.WeightedCluster{Cluster: names[i], Weight: w})
				total += w
			}
			r := compileOne(t, config.Route{Route: &config.RouteAction{WeightedClusters: wc}}).Routes()[0]
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.weights))))
			counts := make([]int, len(wc))
			for i := 0; i < draws; i++ {
				tg := r.PickCluster(rng.Uint64())
				if tg.Index < 0 || tg.Index >= len(counts) || tg.Name != names[tg.Index] {
					t.Fatalf("bad target %+v", tg)
				}
				counts[tg.Index]++
			}
			for i, w := range tc.weights {
				want := float64(w) / float64(total)
				got := float64(counts[i]) / draws
				if math.Abs(got-want) > 0.01 {
					t.Errorf("cluster %s: share %.4f, want %.4f ± 0.01 (counts %v)", names[i], got, want, counts)
				}
			}
		})
	}
}

func TestPickClusterEdges(t *testing.T) {
	r := compileOne(t, config.Route{Route: &config.RouteAction{WeightedClusters: []config.WeightedCluster{
		{Cluster: "a", Weight: 90}, {Cluster: "b", Weight: 10},
	}}}).Routes()[0]
	if got := r.PickCluster(0).Name; got != "a" {
		t.Errorf("r=0 picked %s", got)
	}
	if got := r.PickCluster(math.MaxUint64).Name; got != "b" {
		t.Errorf("r=max picked %s", got)
	}
	// The boundary: the first 90% of the uint64 range goes to a.
	edge := uint64(float64(math.MaxUint64) * 0.9)
	if r.PickCluster(edge-1<<12).Name != "a" || r.PickCluster(edge+1<<12).Name != "b" {
		t.Errorf("split boundary is not at 90%%")
	}
	single := compileOne(t, config.Route{Route: &config.RouteAction{Cluster: "c"}}).Routes()[0]
	if tg := single.PickCluster(12345); tg.Name != "c" || tg.Index != 2 || tg.Weight != 100 {
		t.Errorf("single cluster: %+v", tg)
	}
	direct := compileOne(t, config.Route{DirectResponse: &config.DirectResponse{Status: 200}}).Routes()[0]
	if direct.PickCluster(1) != nil {
		t.Error("a direct response picked a cluster")
	}
}

func TestMirrorSample(t *testing.T) {
	for _, pct := range []float64{5, 50, 100} {
		r := compileOne(t, config.Route{Route: &config.RouteAction{Cluster: "a", Mirror: &config.Mirror{Cluster: "shadow", Percent: pct}}}).Routes()[0]
		if r.Mirror.Name != "shadow" || r.Mirror.Index != 3 || r.Mirror.Percent != pct {
			t.Fatalf("mirror %+v", r.Mirror)
		}
		rng := rand.New(rand.NewPCG(7, 7))
		n := 0
		const draws = 100_000
		for i := 0; i < draws; i++ {
			if r.Mirror.Sample(rng.Uint64()) {
				n++
			}
		}
		if got := float64(n) / draws * 100; math.Abs(got-pct) > 1 {
			t.Errorf("mirror %v%%: sampled %.2f%%", pct, got)
		}
	}
	// Unset percent means all.
	r := compileOne(t, config.Route{Route: &config.RouteAction{Cluster: "a", Mirror: &config.Mirror{Cluster: "shadow"}}}).Routes()[0]
	if r.Mirror.Percent != 100 || !r.Mirror.Sample(math.MaxUint64) {
		t.Errorf("default mirror %+v", r.Mirror)
	}
}

func TestCompileDefaultsAndCopies(t *testing.T) {
	retry := &config.RetryPolicy{On: []string{"5xx"}, PerTryTimeout: config.Duration(time.Second)}
	cr := config.Route{Name: "r", Route: &config.RouteAction{Cluster: "a", Retry: retry}, Filters: []string{"f1", "f2"}}
	r := compileOne(t, cr, config.Route{Redirect: &config.Redirect{Host: "x"}}).Routes()
	fwd, redir := r[0], r[1]
	if fwd.Kind != Forward || fwd.Timeout != config.DefaultRouteTimeout || fwd.PerTryTimeout != time.Second {
		t.Errorf("forward: kind %v timeout %v per-try %v", fwd.Kind, fwd.Timeout, fwd.PerTryTimeout)
	}
	if fwd.Retry == retry || fwd.Retry.Attempts != 2 || fwd.Retry.BackoffBase.D() != 25*time.Millisecond {
		t.Errorf("retry policy not a defaulted copy: %+v", fwd.Retry)
	}
	if retry.Attempts != 0 {
		t.Error("Compile changed the config's retry policy")
	}
	retry.On[0] = "reset"
	cr.Filters[0] = "changed"
	if fwd.Retry.On[0] != "5xx" || fwd.Filters[0] != "f1" {
		t.Error("the compiled route shares slices with the config")
	}
	if redir.Kind != Redirect || redir.Status != 301 || redir.Name != "#1" || redir.VirtualHost != "v" {
		t.Errorf("redirect: %+v", redir)
	}
	if Forward.String() != "route" || Redirect.String() != "redirect" || Direct.String() != "direct_response" {
		t.Error("Kind names")
	}
}

// upstream is a real fasthttp server on loopback that records what it got.
type upstream struct {
	addr string
	got  chan *fasthttp.Request
	srv  *fasthttp.Server
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: ln.Addr().String(), got: make(chan *fasthttp.Request, 1)}
	u.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		var copyReq fasthttp.Request
		ctx.Request.CopyTo(&copyReq)
		u.got <- &copyReq
		ctx.SetStatusCode(200)
		ctx.Response.Header.Set("Server", "upstream")
		ctx.Response.Header.Set("X-Upstream-Secret", "s3cret")
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = u.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = u.srv.Shutdown()
		<-done
	})
	return u
}

// roundTrip writes req on a fresh connection to addr and reads the answer,
// as the proxy's upstream side does, with nothing left running after.
func roundTrip(t *testing.T, addr string, req *fasthttp.Request) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	bw := bufio.NewWriter(conn)
	if err := req.Write(bw); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 {
		t.Fatalf("upstream answered %d", resp.StatusCode())
	}
}

func TestApplyRequestThroughRealUpstream(t *testing.T) {
	up := startUpstream(t)

	mut := config.HeaderMutation{
		Remove: []string{"x-internal-token"},
		Set:    []config.Header{{Name: "x-route", Value: "orders"}, {Name: "x-env", Value: "prod"}},
		Add:    []config.Header{{Name: "x-forwarded-by", Value: "weft"}},
	}
	tbl := compileOne(t,
		config.Route{Name: "prefix", Match: config.Match{Prefix: "/orders"},
			Route:          &config.RouteAction{Cluster: "a", PrefixRewrite: "/v1/orders", HostRewrite: "orders.internal"},
			RequestHeaders: mut},
		config.Route{Name: "exact", Match: config.Match{Path: "/legacy"},
			Route: &config.RouteAction{Cluster: "a", PrefixRewrite: "/modern/"}},
		config.Route{Name: "strip", Match: config.Match{Prefix: "/api/"},
			Route: &config.RouteAction{Cluster: "a", PrefixRewrite: "/"}},
	)
	cases := []struct {
		name, target       string
		headers            []string
		wantURI, wantHost  string
		wantHdr, wantNoHdr []string
	}{
		{"prefix and host rewrite", "/orders/42?x=1", []string{"X-Internal-Token", "t", "X-Env", "dev", "X-Forwarded-By", "edge"},
			"/v1/orders/42?x=1", "orders.internal",
			[]string{"X-Route", "orders", "X-Env", "prod"}, []string{"X-Internal-Token"}},
		// fasthttp decodes and re-quotes paths; an escaped prefix must not
		// make the rewrite decode a second time ("%25" stays a "%").
		{"escaped prefix", "/%6Frders/100%25", nil, "/v1/orders/100%25", "orders.internal", []string{"X-Route", "orders"}, nil},
		{"escape in the rest", "/orders/100%25", nil, "/v1/orders/100%25", "orders.internal", nil, nil},
		{"exact path rewrite keeps query", "/legacy?q=1", nil, "/modern/?q=1", "api.local", nil, nil},
		{"strip prefix", "/api/users/7", nil, "/users/7", "api.local", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request(t, "GET", tc.target, "api.local", tc.headers...)
			r := tbl.Match(req)
			if r == nil {
				t.Fatal("no match")
			}
			r.ApplyRequest(req)
			roundTrip(t, up.addr, req)
			got := <-up.got
			if s := string(got.RequestURI()); s != tc.wantURI {
				t.Errorf("upstream saw %q, want %q", s, tc.wantURI)
			}
			if s := string(got.Host()); s != tc.wantHost {
				t.Errorf("upstream Host %q, want %q", s, tc.wantHost)
			}
			for i := 0; i+1 < len(tc.wantHdr); i += 2 {
				if s := string(got.Header.Peek(tc.wantHdr[i])); s != tc.wantHdr[i+1] {
					t.Errorf("upstream %s = %q, want %q", tc.wantHdr[i], s, tc.wantHdr[i+1])
				}
			}
			for _, h := range tc.wantNoHdr {
				if v := got.Header.Peek(h); v != nil {
					t.Errorf("upstream got %s: %q, want it removed", h, v)
				}
			}
			if tc.name == "prefix and host rewrite" {
				var fwd []string
				for _, v := range got.Header.PeekAll("X-Forwarded-By") {
					fwd = append(fwd, string(v))
				}
				if strings.Join(fwd, ",") != "edge,weft" {
					t.Errorf("X-Forwarded-By %q, want the added value after the original", fwd)
				}
			}
		})
	}
}

func TestApplyResponse(t *testing.T) {
	r := compileOne(t, config.Route{Route: &config.RouteAction{Cluster: "a"}, ResponseHeaders: config.HeaderMutation{
		Remove: []string{"server", "x-upstream-secret"},
		Set:    []config.Header{{Name: "cache-control", Value: "no-store"}},
		Add:    []config.Header{{Name: "vary", Value: "x-user"}},
	}}).Routes()[0]
	var resp fasthttp.Response
	resp.Header.Set("Server", "upstream")
	resp.Header.Set("X-Upstream-Secret", "s")
	resp.Header.Set("Cache-Control", "max-age=60")
	resp.Header.Set("Vary", "accept")
	r.ApplyResponse(&resp)
	if v := resp.Header.Peek("X-Upstream-Secret"); v != nil {
		t.Errorf("secret kept: %q", v)
	}
	if v := string(resp.Header.Peek("Server")); v != "" {
		t.Errorf("server kept: %q", v)
	}
	if v := string(resp.Header.Peek("Cache-Control")); v != "no-store" {
		t.Errorf("cache-control %q", v)
	}
	var vary []string
	for _, v := range resp.Header.PeekAll("Vary") {
		vary = append(vary, string(v))
	}
	if strings.Join(vary, ",") != "accept,x-user" {
		t.Errorf("vary %q", vary)
	}
}

func TestWriteRedirect(t *testing.T) {
	cases := []struct {
		name     string
		rd       config.Redirect
		target   string
		host     string
		status   int
		location string
	}{
		{"https keeps path and query, drops port", config.Redirect{Scheme: "https"}, "/a/b?x=1", "api.local:8080", 301, "https://api.local/a/b?x=1"},
		{"host", config.Redirect{Host: "new.local", StatusCode: 308}, "/a", "old.local", 308, "http://new.local/a"},
		{"path keeps query", config.Redirect{Path: "/moved", StatusCode: 302}, "/old?x=1&y=2", "api.local", 302, "http://api.local/moved?x=1&y=2"},
		{"path with its own query", config.Redirect{Path: "/moved?from=old", StatusCode: 307}, "/old?x=1", "api.local", 307, "http://api.local/moved?from=old"},
		{"everything", config.Redirect{Scheme: "https", Host: "b.local:8443", Path: "/", StatusCode: 303}, "/x", "a.local", 303, "https://b.local:8443/"},
		{"same scheme keeps port", config.Redirect{Scheme: "http", Path: "/p"}, "/x", "a.local:8080", 301, "http://a.local:8080/p"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd := tc.rd
			r := compileOne(t, config.Route{Redirect: &rd}).Routes()[0]
			req := request(t, "GET", tc.target, tc.host)
			var resp fasthttp.Response
			resp.SetBodyString("stale")
			r.WriteRedirect(req, &resp)
			if resp.StatusCode() != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode(), tc.status)
			}
			if got := string(resp.Header.Peek("Location")); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if len(resp.Body()) != 0 {
				t.Errorf("body %q", resp.Body())
			}
		})
	}
}

func TestWriteDirect(t *testing.T) {
	tbl := compileOne(t,
		config.Route{Match: config.Match{Path: "/health"}, DirectResponse: &config.DirectResponse{Status: 200, Body: "ok\n"}},
		config.Route{DirectResponse: &config.DirectResponse{Status: 503}},
	)
	var resp fasthttp.Response
	r := tbl.Match(request(t, "GET", "/health", "x"))
	r.WriteDirect(&resp)
	if resp.StatusCode() != 200 || string(resp.Body()) != "ok\n" || !strings.HasPrefix(string(resp.Header.ContentType()), "text/plain") {
		t.Errorf("got %d %q %q", resp.StatusCode(), resp.Body(), resp.Header.ContentType())
	}
	// The body is copied into the response: changing it must not reach the
	// route.
	resp.Body()[0] = 'X'
	var again fasthttp.Response
	r.WriteDirect(&again)
	if string(again.Body()) != "ok\n" {
		t.Errorf("route body changed through a response: %q", again.Body())
	}
	var empty fasthttp.Response
	empty.SetBodyString("stale")
	tbl.Match(request(t, "GET", "/other", "x")).WriteDirect(&empty)
	if empty.StatusCode() != 503 || len(empty.Body()) != 0 {
		t.Errorf("got %d %q", empty.StatusCode(), empty.Body())
	}
}

// TestMirrorSampleBoundary checks the sampling threshold exactly: at 50%
// the lower half of the uint64 range is mirrored and the upper half not.
func TestMirrorSampleBoundary(t *testing.T) {
	r := compileOne(t, config.Route{Route: &config.RouteAction{Cluster: "a", Mirror: &config.Mirror{Cluster: "shadow", Percent: 50}}}).Routes()[0]
	cases := []struct {
		r    uint64
		want bool
	}{
		{0, true},
		{1<<63 - 1, true},
		{1 << 63, false},
		{math.MaxUint64, false},
	}
	for _, c := range cases {
		if got := r.Mirror.Sample(c.r); got != c.want {
			t.Errorf("Sample(%#x) at 50%% = %v, want %v", c.r, got, c.want)
		}
	}
}

// TestDirectResponseStatusRange checks the bounds of a direct response's
// status are inclusive: 100 and 599 compile, 99 and 600 do not.
func TestDirectResponseStatusRange(t *testing.T) {
	for status, ok := range map[int]bool{99: false, 100: true, 200: true, 599: true, 600: false, 0: false} {
		_, err := Compile(config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{{Name: "v", Domains: []string{"*"},
			Routes: []config.Route{{DirectResponse: &config.DirectResponse{Status: status}}}}}}, nil)
		if (err == nil) != ok {
			t.Errorf("direct_response status %d: err %v, want ok=%v", status, err, ok)
		}
	}
}

// TestPickClusterZeroWeights: a zero weight is allowed and never picked; a
// negative one is refused; when every weight is zero the last cluster takes
// the traffic rather than none.
func TestPickClusterZeroWeights(t *testing.T) {
	wc := func(ws ...int) *config.RouteAction {
		var out []config.WeightedCluster
		for i, w := range ws {
			out = append(out, config.WeightedCluster{Cluster: []string{"a", "b", "c"}[i], Weight: w})
		}
		return &config.RouteAction{WeightedClusters: out}
	}
	cases := []struct {
		name    string
		action  *config.RouteAction
		rnds    []uint64
		want    string
		wantErr string
	}{
		{"zero weight first", wc(0, 100), []uint64{0, 1 << 63, math.MaxUint64}, "b", ""},
		{"zero weight last", wc(100, 0), []uint64{0, 1 << 63, math.MaxUint64}, "a", ""},
		{"all zero", wc(0, 0, 0), []uint64{0, 1 << 63, math.MaxUint64}, "c", ""},
		{"negative", wc(-1, 100), nil, "", `cluster "a": weight must not be negative, got -1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := Compile(config.Listener{Name: "l", VirtualHosts: []config.VirtualHost{{Name: "v", Domains: []string{"*"},
				Routes: []config.Route{{Route: tc.action}}}}}, map[string]int{"a": 0, "b": 1, "c": 2})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := tbl.Routes()[0]
			for _, rnd := range tc.rnds {
				if got := r.PickCluster(rnd); got == nil || got.Name != tc.want {
					t.Errorf("PickCluster(%#x) = %+v, want %s", rnd, got, tc.want)
				}
			}
		})
	}
}

// TestApplyRequestWithoutRewrite: a route with no prefix_rewrite leaves the
// path alone, prefix and exact matches alike.
func TestApplyRequestWithoutRewrite(t *testing.T) {
	tbl := compileOne(t,
		config.Route{Match: config.Match{Prefix: "/api"}, Route: &config.RouteAction{Cluster: "a"}},
		config.Route{Match: config.Match{Path: "/exact"}, Route: &config.RouteAction{Cluster: "a"}},
	)
	for _, target := range []string{"/api/users?x=1", "/exact?y=2"} {
		req := request(t, "GET", target, "api.local")
		r := tbl.Match(req)
		if r == nil {
			t.Fatalf("%s: no match", target)
		}
		r.ApplyRequest(req)
		if got := string(req.URI().RequestURI()); got != target {
			t.Errorf("%s became %q", target, got)
		}
	}
}

// TestWriteRedirectHostFromURI: with no Host header (a request built in
// code) the redirect takes the host from the request URI.
func TestWriteRedirectHostFromURI(t *testing.T) {
	r := compileOne(t, config.Route{Redirect: &config.Redirect{Scheme: "https"}}).Routes()[0]
	var req fasthttp.Request
	req.SetRequestURI("http://a.local:8080/x?q=1")
	var resp fasthttp.Response
	r.WriteRedirect(&req, &resp)
	if got := string(resp.Header.Peek("Location")); got != "https://a.local/x?q=1" {
		t.Errorf("Location %q, want https://a.local/x?q=1", got)
	}
}

// TestApplyRequestPathRewrite: path_rewrite replaces the whole path,
// whatever the match, and keeps the query.
func TestApplyRequestPathRewrite(t *testing.T) {
	tbl := compileOne(t,
		config.Route{Match: config.Match{Prefix: "/api/"}, Route: &config.RouteAction{Cluster: "a", PathRewrite: "/users"}},
		config.Route{Match: config.Match{Regex: "/v[0-9]+/.*"}, Route: &config.RouteAction{Cluster: "a", PathRewrite: "/latest"}},
	)
	for target, want := range map[string]string{"/api/users/7?x=1": "/users?x=1", "/api/": "/users", "/v2/a/b": "/latest"} {
		req := request(t, "GET", target, "api.local")
		r := tbl.Match(req)
		if r == nil {
			t.Fatalf("%s: no match", target)
		}
		r.ApplyRequest(req)
		if got := string(req.URI().RequestURI()); got != want {
			t.Errorf("%s became %q, want %q", target, got, want)
		}
	}
}
