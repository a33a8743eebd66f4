package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// The config a mesh user writes for a service with two endpoints: no retry
// policy, no health check, no outlier detection; the defaults do the rest.
// {{route}} and {{cluster}} add to the route and the cluster.
const endpointDeathConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: svc{{route}}}
clusters:
  - name: svc
    endpoints: [{address: "{{a}}"}, {address: "{{b}}"}]{{cluster}}
`

// Killing one of two endpoints under load (16 concurrent clients) fails at
// most 0.1% of the requests sent from the kill on, with the defaults alone:
// a connect failure is retried at once on the other endpoint, outside the
// retry budget, and the dead endpoint is ejected. Each half holds on its
// own: retries alone (outlier detection off) and an explicit retry policy
// with its own defaults. Both HTTP/1.1 and HTTP/2 streams (h2c) take the
// same retry path.
func TestEndpointDeathUnderLoadWithDefaults(t *testing.T) {
	const clients, afterKill = 16, 3000
	for _, tt := range []struct {
		name           string
		route, cluster string
		eject          bool // the dead endpoint must be ejected
	}{
		{name: "defaults", eject: true},
		{name: "retry policy with its defaults", route: ", retry: {}", eject: true},
		{name: "retries alone", cluster: "\n    outlier_detection: {disabled: true}"},
	} {
		for _, proto := range []string{"http1", "h2c"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				a, b := testserver.Start(t, "a"), testserver.Start(t, "b")
				p, url := startProxy(t, endpointDeathConfig, map[string]string{
					"a": a.Addr, "b": b.Addr, "route": tt.route, "cluster": tt.cluster})
				h2 := h2cClient()
				defer h2.CloseIdleConnections()
				ld := startLoad(t, clients, 1<<20, func(c *fasthttp.Client) string {
					if proto == "http1" {
						if st, body, _ := get(t, c, url+"/"); st != 200 {
							return fmt.Sprintf("%d %q", st, body)
						}
						return ""
					}
					resp, err := h2.Get(url + "/")
					if err != nil {
						return err.Error()
					}
					body, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Sprintf("%d %q", resp.StatusCode, body)
					}
					return ""
				})
				eventually(t, 10*time.Second, "load to reach both endpoints", func() bool {
					return a.Hits.Load() > 100 && b.Hits.Load() > 100
				})
				a.Stop()
				n := ld.Total()
				eventually(t, 60*time.Second, "load after the kill", func() bool { return ld.Total() > n+afterKill })
				failed, total := ld.Failed(), ld.Total()
				t.Logf("%d of %d requests failed (%d sent after the kill)", failed, total, total-n)
				if failed*1000 > total-n {
					t.Fatalf("%d requests failed, %d sent after one of two endpoints was killed: want at most 0.1%%",
						failed, total-n)
				}
				st := p.snap.Load().clusters[0].c.Stats()
				if got := st.Ejections.Load(); (got > 0) != tt.eject {
					t.Fatalf("%d ejections, want ejected=%v", got, tt.eject)
				}
			})
		}
	}
}

const previousHostsConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: svc}
clusters:
  - name: svc
    lb: {{lb}}
    endpoints: [{address: "{{dead1}}"}, {address: "{{dead2}}"}, {address: "{{live}}"}]
    outlier_detection: {disabled: true}
`

// Each retry goes to an endpoint the request has not tried (Envoy's
// previous_hosts predicate), so with two of three endpoints refusing
// connections the default two retries always reach the live one, whatever
// the balancer; avoiding only the last endpoint tried would go back to the
// first dead one.
func TestRetriesAvoidEveryEndpointTried(t *testing.T) {
	for _, lb := range []string{"round_robin", "random", "least_request"} {
		t.Run(lb, func(t *testing.T) {
			live := testserver.Start(t, "live")
			_, url := startProxy(t, previousHostsConfig, map[string]string{
				"lb": lb, "dead1": closedAddr(t), "dead2": closedAddr(t), "live": live.Addr})
			c := &fasthttp.Client{}
			for i := range 200 {
				if st, body, _ := get(t, c, url+"/"); st != 200 || body != "live" {
					t.Fatalf("request %d: %d %q, want the live endpoint's answer", i, st, body)
				}
			}
		})
	}
}

// A connect failure sent nothing, so the default policy retries it on
// another endpoint whatever the method: a POST with a body reaches the live
// endpoint whole, over HTTP/1.1 and h2c (where the body streams and is not
// kept for replay, since POST is not retried otherwise).
func TestConnectFailureRetriesAnyMethod(t *testing.T) {
	live := testserver.Start(t, "live")
	_, url := startProxy(t, previousHostsConfig, map[string]string{
		"lb": "round_robin", "dead1": closedAddr(t), "dead2": closedAddr(t), "live": live.Addr})
	h2 := h2cClient()
	defer h2.CloseIdleConnections()
	c := &fasthttp.Client{}
	for i := range 30 {
		body := fmt.Sprintf("payload %d", i)
		var st int
		if i%2 == 0 {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI(url + "/post")
			req.Header.SetMethod("POST")
			req.SetBodyString(body)
			if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
				t.Fatalf("HTTP/1.1 POST %d: %v", i, err)
			}
			st = resp.StatusCode()
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
		} else {
			resp, err := h2.Post(url+"/post", "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatalf("h2c POST %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			st = resp.StatusCode
		}
		if st != 200 {
			t.Fatalf("POST %d: %d, want the live endpoint's 200", i, st)
		}
		if got := string(live.Last().Body()); got != body {
			t.Fatalf("POST %d: the live endpoint got body %q, want %q", i, got, body)
		}
	}
}
