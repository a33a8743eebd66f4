package control_test

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/telemetry"
	"github.com/weftmesh/weft/control/ui/browsertest"
)

// TestMeshUI runs two real sidecars behind a 70/30 canary split, scrapes
// them, and renders the control plane's /ui in headless Chromium: the page
// must show the service with its numbers, the configured canary weights
// and each sidecar's config version, and draw a real picture. s1 is a
// client; s2 fronts orders and calls it too (a self-loop); and a service
// nobody calls gives each sidecar a zero-traffic edge. The graph draws
// one arrow (s1 to orders), writes orders' calls to itself under its
// node, and labels the node's number as p99.
func TestMeshUI(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	mesh := meshYAML(a.Addr, b.Addr, 70, 30, "s1") + `---
kind: Sidecar
name: s2
spec:
  service: orders
  outbound: 127.0.0.1:0
---
kind: Service
name: idle
spec:
  versions:
    - name: v1
      endpoints: [{address: "` + a.Addr + `"}]
`
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL(), WithAdmin: true})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL(), WithAdmin: true})
	for _, s := range []*meshtest.Sidecar{s1, s2} {
		meshtest.Eventually(t, "a config on "+s.ID, func() bool { return strings.HasPrefix(body(t, s, "orders"), "200 ") })
	}
	meshtest.Eventually(t, "admin addresses and ACKs reported", func() bool {
		for _, n := range status(t, cp.URL()).Nodes {
			if n.Admin == "" || !n.InSync {
				return false
			}
		}
		return true
	})
	cp.ScrapeNow(t.Context())
	for i := 0; i < 80; i++ {
		body(t, s1, "orders")
	}
	for i := 0; i < 20; i++ {
		body(t, s2, "orders")
	}
	time.Sleep(50 * time.Millisecond) // a scrape interval the rates are computed over
	cp.ScrapeNow(t.Context())

	code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/telemetry", "")
	var v telemetry.View
	// Edges (sorted): s1 to idle and orders, s2 to idle and orders.
	if code != 200 || json.Unmarshal([]byte(out), &v) != nil || len(v.Services) != 2 || len(v.Edges) != 4 {
		t.Fatalf("telemetry: %d %s", code, out)
	}
	if e := v.Edges[1]; e.FromNode != "s1" || e.ToService != "default/orders" || e.RequestsTotal < 80 || e.RequestsPerSecond <= 0 {
		t.Fatalf("edge s1: %+v", e)
	}
	if e := v.Edges[0]; e.ToService != "default/idle" || e.RequestsTotal != 0 {
		t.Fatalf("edge s1 to idle: %+v", e)
	}
	svc := v.Services[1]
	if svc.Service != "default/orders" {
		t.Fatalf("services: %+v", v.Services)
	}

	// The page takes the operator's token from the URL's fragment.
	page := browsertest.Render(t, cp.URL()+"/ui?refresh=100000#token="+cp.AdminToken(), 3000*time.Millisecond)
	dom := page.DOM
	if !strings.Contains(dom, `data-loaded="true"`) {
		t.Fatalf("the page did not load its data:\n%s", dom)
	}
	row := func(re string) string {
		m := regexp.MustCompile(re).FindString(dom)
		if m == "" {
			t.Fatalf("no %s in the DOM:\n%s", re, dom)
		}
		return m
	}
	r := row(`<tr data-service="default/orders">.*?</tr>`)
	for _, want := range []string{
		fmt.Sprintf(`class="num total">%.0f<`, svc.RequestsTotal),
		`class="num errors ok">0.0%<`,
		`v1 70%`, `v2 30%`, // the configured canary weights
	} {
		if !strings.Contains(r, want) {
			t.Errorf("service row lacks %q: %s", want, r)
		}
	}
	// p99 as the page rounds it (JS and Go may round a tie differently).
	if m := regexp.MustCompile(`class="num p99">([0-9.]+) ms<`).FindStringSubmatch(r); m == nil {
		t.Errorf("service row has no p99: %s", r)
	} else if p99, _ := strconv.ParseFloat(m[1], 64); math.Abs(p99-svc.P99Ms) > 0.051 || p99 <= 0 {
		t.Errorf("service row p99 %s ms, telemetry says %v", m[1], svc.P99Ms)
	}
	for n, from := range map[string]string{"s1": "s1", "s2": "default/orders"} {
		e := row(`<tr data-edge="` + from + ` to default/orders">.*?</tr>`)
		if !strings.Contains(e, `class="num rps">`) || strings.Contains(e, `class="num rps">0.0<`) {
			t.Errorf("edge row %s has no rate: %s", n, e)
		}
		ns := nodeStatus(t, cp.URL(), n)
		if sc := row(`<tr data-node="` + n + `">.*?</tr>`); !strings.Contains(sc, `class="applied">`+ns.Applied+`<`) || !strings.Contains(sc, `class="ok">yes<`) {
			t.Errorf("sidecar row %s (applied %s): %s", n, ns.Applied, sc)
		}
	}
	if strings.Contains(dom, "to default/idle") {
		t.Errorf("the page lists an edge that never carried a request:\n%s", dom)
	}
	if !strings.Contains(dom, "<svg") || strings.Count(dom, "<line ") != 1 || !strings.Contains(dom, `<line x1=`) ||
		!strings.Contains(dom, `data-link="s1 to default/orders"`) || strings.Count(dom, "<circle ") < 3 {
		t.Errorf("the graph does not draw exactly the arrow s1 to orders (no zero-traffic arrow, no self-loop):\n%s", dom)
	}
	if m := regexp.MustCompile(`class="self" data-service="default/orders">↻ ([0-9.]+) rps to itself<`).FindStringSubmatch(dom); m == nil || m[1] == "0.0" {
		t.Errorf("orders' calls to itself are not written under its node:\n%s", dom)
	}
	if m := regexp.MustCompile(`class="node-p99" data-service="default/orders">p99 ([0-9.]+) ms<`).FindStringSubmatch(dom); m == nil {
		t.Errorf("the orders node does not say its number is p99:\n%s", dom)
	}
	if !strings.Contains(dom, `class="node-p99" data-service="default/idle">p99 –<`) {
		t.Errorf("the idle node does not show an unknown p99:\n%s", dom)
	}
	browsertest.CheckPicture(t, page.Screenshot, 1000, 600, 16)
}
