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

// TestMeshUI runs three real sidecars behind a 70/30 canary split, scrapes
// them, and renders the control plane's /ui in headless Chromium: the page
// must show the service with its numbers, the configured canary weights
// and each sidecar's config version, and draw a real picture. s1 and s3
// front web and call orders; s2 fronts orders and calls it too (a
// self-loop); and a service nobody calls gives each sidecar a
// zero-traffic edge. The graph draws one arrow, web to orders, carrying
// both web sidecars' traffic under one label; writes orders' calls to
// itself under its node; and labels each node's number as p99.
func TestMeshUI(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	mesh := meshYAML(a.Addr, b.Addr, 70, 30)
	for _, sc := range [][2]string{{"s1", "web"}, {"s2", "orders"}, {"s3", "web"}} {
		mesh += "---\nkind: Sidecar\nname: " + sc[0] + "\nspec:\n  service: " + sc[1] + "\n  outbound: 127.0.0.1:0\n"
	}
	for _, svc := range []string{"web", "idle"} {
		mesh += "---\nkind: Service\nname: " + svc + "\nspec:\n  versions:\n    - name: v1\n      endpoints: [{address: \"" + a.Addr + "\"}]\n"
	}
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL(), WithAdmin: true})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL(), WithAdmin: true})
	s3 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s3", URL: cp.URL(), WithAdmin: true})
	for _, s := range []*meshtest.Sidecar{s1, s2, s3} {
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
	waitRecorded(t, a.Hits.Load()+b.Hits.Load(), s1, s2, s3)
	cp.ScrapeNow(t.Context())
	for s, n := range map[*meshtest.Sidecar]int{s1: 80, s2: 20, s3: 30} {
		for i := 0; i < n; i++ {
			body(t, s, "orders")
		}
	}
	// The rates are computed over the two scrapes' window, which holds
	// every one of these requests once the sidecars have recorded them.
	waitRecorded(t, a.Hits.Load()+b.Hits.Load(), s1, s2, s3)
	cp.ScrapeNow(t.Context())

	code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/telemetry", "")
	var v telemetry.View
	if code != 200 || json.Unmarshal([]byte(out), &v) != nil || len(v.Services) != 3 || len(v.Edges) != 9 {
		t.Fatalf("telemetry: %d %s", code, out)
	}
	edge := map[string]telemetry.EdgeView{}
	for _, e := range v.Edges {
		edge[e.FromNode+" "+e.ToService] = e
	}
	if e := edge["s1 default/orders"]; e.RequestsTotal < 80 || e.RequestsPerSecond <= 0 {
		t.Fatalf("edge s1: %+v", e)
	}
	if e := edge["s1 default/idle"]; e.RequestsTotal != 0 {
		t.Fatalf("edge s1 to idle: %+v", e)
	}
	webRps := edge["s1 default/orders"].RequestsPerSecond + edge["s3 default/orders"].RequestsPerSecond
	var svc telemetry.ServiceView
	for _, sv := range v.Services {
		if sv.Service == "default/orders" {
			svc = sv
		}
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
	for n, from := range map[string]string{"s1": "default/web", "s2": "default/orders", "s3": "default/web"} {
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
		!strings.Contains(dom, `data-link="default/web to default/orders"`) || strings.Count(dom, "<circle ") != 3 {
		t.Errorf("the graph does not draw exactly one arrow, web to orders, between 3 services (no zero-traffic arrow, no self-loop):\n%s", dom)
	}
	// One label for both web sidecars, their rates summed.
	if m := regexp.MustCompile(`class="edge-label">([0-9.]+) rps · 0.0%<`).FindAllStringSubmatch(dom, -1); len(m) != 1 {
		t.Errorf("the graph has %d arrow labels, want 1:\n%s", len(m), dom)
	} else if r, _ := strconv.ParseFloat(m[0][1], 64); math.Abs(r-webRps) > 0.051 {
		t.Errorf("the web to orders arrow says %s rps, its sidecars %v together", m[0][1], webRps)
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
