package control_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy"
)

// TestPolicyEndpointAuthorization runs issue 19 §4 through real sidecars
// with SPIFFE identities from the mesh CA: orders-1 fronts orders; web-1
// and batch-1 call it. The Policy says which service may call which
// endpoints (by path glob and method), denies an admin path to everyone,
// and a dry-run Policy tries one more deny rule without enforcing it. The
// same decisions hold for HTTP/2 (a gRPC call gets PERMISSION_DENIED).
func TestPolicyEndpointAuthorization(t *testing.T) {
	app := meshtest.StartUpstream(t, "orders")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), CA: &ca.Options{TrustDomain: "weft.test"}})
	t.Cleanup(func() { _ = cp.Close() })
	inbound := meshtest.FreeAddr(t)
	code, b := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", `kind: Service
name: orders
spec: {endpoints: [{address: "`+inbound+`"}]}
---
kind: Service
name: web
spec: {endpoints: [{address: "127.0.0.1:9", sidecar: false}]}
---
kind: Service
name: batch
spec: {endpoints: [{address: "127.0.0.1:9", sidecar: false}]}
---
kind: Policy
name: orders-api
spec:
  services: [orders]
  mtls: strict
  allow:
    - name: web-reads
      from: [web]
      methods: [GET]
      paths: ["/api/*", "/users/*/orders"]
    - name: batch-jobs
      from: [batch]
      methods: [POST]
      paths: ["/jobs/**"]
  deny:
    - name: no-admin
      paths: ["/api/admin*"]
    - name: no-debug
      headers: [{name: x-debug, present: true}]
---
kind: Policy
name: orders-tryout
spec:
  services: [orders]
  dry_run: true
  deny:
    - name: no-internal
      paths: ["/api/internal/*"]
---
kind: Sidecar
name: orders-1
spec: {service: orders, outbound: "127.0.0.1:0", inbound: "`+inbound+`", app: "`+app.Addr+`", admin: "off"}
---
kind: Sidecar
name: web-1
spec: {service: web, outbound: "127.0.0.1:0", admin: "off"}
---
kind: Sidecar
name: batch-1
spec: {service: batch, outbound: "127.0.0.1:0", admin: "off"}
`)
	if code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	core, logs := observer.New(zap.InfoLevel)
	orders := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "orders-1", URL: cp.URL(), Logger: zap.New(core)})
	webID := meshtest.Join(t, cp, "web-1")
	web := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "web-1", URL: cp.URL(), Identity: webID})
	batch := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "batch-1", URL: cp.URL()})
	meshtest.Eventually(t, "the three sidecars in sync, web-1 reaching orders", func() bool {
		for _, n := range status(t, cp.URL()).Nodes {
			if !n.InSync {
				return false
			}
		}
		c, _ := call(t, web, "GET", "/api/items", nil)
		return c == 200
	})

	for _, c := range []struct {
		from         *meshtest.Sidecar
		method, path string
		want         int
		rule         string // x-weft-authz on a denial
		hdr          []string
	}{
		{web, "GET", "/api/items", 200, "", nil},
		{web, "GET", "/users/7/orders", 200, "", nil},
		{web, "GET", "/users/7/8/orders", 403, "denied:default", nil}, // "*" is one segment
		{web, "POST", "/api/items", 403, "denied:default", nil},       // web may only read
		{web, "GET", "/api/admin/users", 403, "denied:orders-api.default.no-admin", nil},
		{web, "GET", "/jobs/nightly/run", 403, "denied:default", nil},
		{batch, "POST", "/jobs/nightly/run", 200, "", nil},
		{batch, "GET", "/api/items", 403, "denied:default", nil},
		{batch, "POST", "/api/admin/jobs", 403, "denied:orders-api.default.no-admin", nil},
		{web, "GET", "/api/internal/x", 200, "", nil}, // dry run: logged, not refused
		{web, "GET", "/api/items", 403, "denied:orders-api.default.no-debug", []string{"X-Debug", "1"}},
	} {
		code, hdr := call(t, c.from, c.method, c.path, nil, c.hdr...)
		if code != c.want || hdr.Get("X-Weft-Authz") != c.rule {
			t.Errorf("%s %s %s: %d %q, want %d %q", c.from.ID, c.method, c.path, code, hdr.Get("X-Weft-Authz"), c.want, c.rule)
		}
	}
	if got := logs.FilterMessage("authz dry run: this request would be denied").All(); len(got) != 1 ||
		got[0].ContextMap()["rule"] != "orders-tryout.default.no-internal" || got[0].ContextMap()["path"] != "/api/internal/x" {
		t.Errorf("dry-run log: %v; want one entry for /api/internal/x by orders-tryout.default.no-internal", got)
	}
	if n := counter(t, orders.Proxy, "weft_authz_dry_run_denied_total", "orders-tryout.default.no-internal"); n != 1 {
		t.Errorf("dry-run denials counted %v, want 1", n)
	}
	if n := counter(t, orders.Proxy, "weft_authz_denied_total", "orders-api.default.no-admin"); n != 2 {
		t.Errorf("no-admin denials counted %v, want 2", n)
	}

	// HTTP/2 straight to orders-1's inbound, over mTLS as web (its SPIFFE
	// certificate, h2 by ALPN): the same rules, and a gRPC call to a path
	// web may not use gets PERMISSION_DENIED.
	tc := webID.ClientConfig(tls.VersionTLS12, []string{"spiffe://weft.test/ns/default/sa/orders"})
	tc.NextProtos = []string{"h2"}
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	defer h2.CloseIdleConnections()
	for _, c := range []struct {
		method, path, ctype string
		want                int
		grpcStatus          string
	}{
		{"GET", "/api/items", "", 200, ""},
		{"GET", "/api/admin/x", "", 403, ""},
		{"POST", "/orders.Orders/Delete", "application/grpc", 200, "7"},
	} {
		req, _ := http.NewRequest(c.method, "https://"+inbound+c.path, strings.NewReader(""))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
			req.Header.Set("TE", "trailers")
		}
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("h2 %s %s: %v", c.method, c.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		gs := resp.Header.Get("Grpc-Status")
		if gs == "" {
			gs = resp.Trailer.Get("Grpc-Status")
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != c.want || gs != c.grpcStatus {
			t.Errorf("h2 %s %s: HTTP/%d %d grpc-status %q, want HTTP/2 %d %q", c.method, c.path, resp.ProtoMajor, resp.StatusCode, gs, c.want, c.grpcStatus)
		}
	}
}

// call sends a request (with headers as name, value pairs) through a
// sidecar's outbound listener to orders.
func call(t *testing.T, sc *meshtest.Sidecar, method, path string, body io.Reader, hdr ...string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+sc.Proxy.ListenerAddr("outbound").String()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Host = "orders"
	resp, err := meshtest.HTTP.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// counter reads one {listener="inbound", rule} series of a sidecar.
func counter(t *testing.T, p *proxy.Proxy, name, rule string) float64 {
	t.Helper()
	mfs, err := p.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "listener") == "inbound" && label(m, "rule") == rule {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
