package conformance_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/testserver"
	"github.com/weftmesh/weft/proxy/wasm"
)

// authCall is a request the auth server received from the host.
type authCall struct {
	Method, URI, Host, Origin, Body string
}

// TestHTTPCall: the guest pauses on request headers, calls the "auth"
// cluster (a real server) through Env.Upstream, and on the answer either
// resumes the request with headers copied from it (the upstream sees them)
// or answers locally.
func TestHTTPCall(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		calls []authCall
	)
	auth := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		calls = append(calls, authCall{
			Method: string(ctx.Method()),
			URI:    string(ctx.RequestURI()),
			Host:   string(ctx.Host()),
			Origin: string(ctx.Request.Header.Peek("X-Call-Origin")),
			Body:   string(ctx.PostBody()),
		})
		mu.Unlock()
		switch user := string(ctx.QueryArgs().Peek("user")); user {
		case "mallory", "":
			ctx.SetStatusCode(403)
			ctx.SetBodyString(user + " is banned")
		default:
			ctx.Response.Header.Set("X-Auth-Identity", "user:"+user)
			ctx.SetBodyString("ok-" + user)
		}
	})
	// A port nothing listens on: calls to it fail to connect.
	deadAddr := testserver.RefusedAddr(t)

	cl := newClusters()
	cl.Add("auth", auth.Addr)
	cl.Add("down", deadAddr)
	env := wasm.Env{Upstream: cl}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "httpcall")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	t.Run("allowed: call response headers reach the upstream", func(t *testing.T) {
		res := px.mustDo(t, request{Path: "/orders", Header: [][2]string{{"X-User", "alice"}}})
		if res.Status != 200 || res.Upstream == nil {
			t.Fatalf("status %d, body %q, upstream saw it: %v", res.Status, res.Body, res.Upstream != nil)
		}
		if got := res.Upstream.Get("x-auth-identity"); got != "user:alice" {
			t.Errorf("upstream x-auth-identity %q, want user:alice", got)
		}
		if got := res.Upstream.Get("x-auth-body"); got != "ok-alice" {
			t.Errorf("upstream x-auth-body %q, want ok-alice (the call's response body)", got)
		}
		if res.Trace.RequestHeaders != filter.Continue {
			t.Errorf("OnRequestHeaders returned %v, want Continue after the resume", res.Trace.RequestHeaders)
		}
		mu.Lock()
		defer mu.Unlock()
		var found bool
		for _, c := range calls {
			if c.URI == "/check?user=alice" {
				found = true
				if c.Method != "POST" || c.Host != "auth.internal" || c.Origin != "httpcall-guest" || c.Body != "who=alice" {
					t.Errorf("auth server got %+v, want POST /check?user=alice, Host auth.internal, x-call-origin httpcall-guest, body who=alice", c)
				}
			}
		}
		if !found {
			t.Errorf("auth server never got the call; it got %+v", calls)
		}
	})

	t.Run("an empty :authority is accepted and names the cluster", func(t *testing.T) {
		res := px.mustDo(t, request{Path: "/orders", Header: [][2]string{{"X-User", "erin"}, {"X-Empty-Authority", "1"}}})
		if res.Status != 200 || res.Upstream == nil || res.Upstream.Get("x-auth-identity") != "user:erin" {
			t.Fatalf("status %d, body %q, dispatch error %q, status %q", res.Status, res.Body, res.Get("x-dispatch-error"), res.Get("x-dispatch-status"))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.URI == "/check?user=erin" {
				if c.Host != "auth" {
					t.Errorf("auth server saw Host %q, want the cluster's name, auth", c.Host)
				}
				return
			}
		}
		t.Errorf("auth server never got the call; it got %+v", calls)
	})

	t.Run("denied: the call response makes a local reply", func(t *testing.T) {
		res := px.mustDo(t, request{Path: "/orders", Header: [][2]string{{"X-User", "mallory"}}})
		if res.Status != 401 {
			t.Errorf("status %d, want 401", res.Status)
		}
		if got := res.Get("x-auth-status"); got != "403" {
			t.Errorf("x-auth-status %q, want 403 (the call's :status)", got)
		}
		if res.Body != "denied by auth: mallory is banned" {
			t.Errorf("body %q", res.Body)
		}
		if res.Upstream != nil {
			t.Error("the upstream saw a denied request")
		}
		if res.Trace.RequestHeaders != filter.LocalReply {
			t.Errorf("OnRequestHeaders returned %v, want LocalReply", res.Trace.RequestHeaders)
		}
	})

	for _, tc := range []struct{ name, cluster, reason string }{
		{"unknown cluster", "nope", "no_cluster"},
		{"connection refused", "down", "connect_failure"},
	} {
		t.Run(tc.name+": the guest gets a call response without headers", func(t *testing.T) {
			res := px.mustDo(t, request{Header: [][2]string{{"X-User", "bob"}, {"X-Auth-Cluster", tc.cluster}}})
			// Envoy answers a failed call with on_http_call_response(0 headers);
			// a host may also refuse the dispatch outright (the guest then
			// answers 500 itself). Either way the request must not go upstream.
			switch res.Status {
			case 503:
				if res.Get("x-auth-failure") != "no-response" {
					t.Errorf("503 without the guest's x-auth-failure header: %v", res.Header)
				}
				// The guest read why from :dispatch_status.
				if got := res.Get("x-dispatch-status"); got != tc.reason {
					t.Errorf("x-dispatch-status %q, want %q", got, tc.reason)
				}
			case 500:
				if res.Get("x-dispatch-error") == "" {
					t.Errorf("500 without the guest's x-dispatch-error header: %v %q", res.Header, res.Body)
				}
				t.Logf("host refused the dispatch: %s", res.Get("x-dispatch-error"))
			default:
				t.Errorf("status %d, body %q: want the guest's 503 (no call response) or 500 (dispatch refused)", res.Status, res.Body)
			}
			if res.Upstream != nil {
				t.Error("the upstream saw a request whose auth call failed")
			}
		})
	}

	t.Run("failed call-outs are counted by reason", func(t *testing.T) {
		got := calloutFailures(t, plugin.Name())
		if got["no_cluster"] != 1 || got["connect_failure"] != 1 || got["timeout"] != 0 {
			t.Errorf("weft_wasm_callout_failures_total %v, want no_cluster 1, connect_failure 1", got)
		}
	})

	t.Run("concurrent calls resume the right streams", func(t *testing.T) {
		const n = 24
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				user := fmt.Sprintf("user%d", i)
				res, err := px.do(request{Path: "/c", Header: [][2]string{{"X-User", user}}})
				if err != nil {
					errs <- err
					return
				}
				if res.Status != 200 || res.Upstream == nil || res.Upstream.Get("x-auth-identity") != "user:"+user {
					got := ""
					if res.Upstream != nil {
						got = res.Upstream.Get("x-auth-identity")
					}
					errs <- fmt.Errorf("%s: status %d, upstream identity %q", user, res.Status, got)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// calloutFailures gathers weft_wasm_callout_failures_total of one plugin.
func calloutFailures(t *testing.T, plugin string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(runtime(t).Collector()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "weft_wasm_callout_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] == plugin {
				out[labels["reason"]] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
