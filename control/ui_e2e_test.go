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
// must show the service with its numbers, one edge per sidecar, the
// configured canary weights and each sidecar's config version, and draw a
// real picture.
func TestMeshUI(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 70, 30, "s1", "s2")); code != 200 {
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
	waitRecorded(t, a.Hits.Load()+b.Hits.Load(), s1, s2)
	cp.ScrapeNow(t.Context())
	for i := 0; i < 80; i++ {
		body(t, s1, "orders")
	}
	for i := 0; i < 20; i++ {
		body(t, s2, "orders")
	}
	// The rates are computed over the two scrapes' window, which holds
	// every one of these requests once the sidecars have recorded them.
	waitRecorded(t, a.Hits.Load()+b.Hits.Load(), s1, s2)
	cp.ScrapeNow(t.Context())

	code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/telemetry", "")
	var v telemetry.View
	if code != 200 || json.Unmarshal([]byte(out), &v) != nil || len(v.Services) != 1 || len(v.Edges) != 2 {
		t.Fatalf("telemetry: %d %s", code, out)
	}
	if e := v.Edges[0]; e.FromNode != "s1" || e.ToService != "default/orders" || e.RequestsTotal < 80 || e.RequestsPerSecond <= 0 {
		t.Fatalf("edge s1: %+v", e)
	}
	svc := v.Services[0]

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
	for _, n := range []string{"s1", "s2"} {
		e := row(`<tr data-edge="` + n + ` to default/orders">.*?</tr>`)
		if !strings.Contains(e, `class="num rps">`) || strings.Contains(e, `class="num rps">0.0<`) {
			t.Errorf("edge row %s has no rate: %s", n, e)
		}
		ns := nodeStatus(t, cp.URL(), n)
		if sc := row(`<tr data-node="` + n + `">.*?</tr>`); !strings.Contains(sc, `class="applied">`+ns.Applied+`<`) || !strings.Contains(sc, `class="ok">yes<`) {
			t.Errorf("sidecar row %s (applied %s): %s", n, ns.Applied, sc)
		}
	}
	if !strings.Contains(dom, "<svg") || strings.Count(dom, "<line ") != 2 || strings.Count(dom, "<circle ") < 2 {
		t.Errorf("the graph does not draw 2 edges between the services:\n%s", dom)
	}
	browsertest.CheckPicture(t, page.Screenshot, 1000, 600, 16)
}
