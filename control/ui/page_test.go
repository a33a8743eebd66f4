package ui_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/ui/browsertest"
)

// startControl starts a real control plane (TLS API, a bootstrap admin
// token) holding one service, a 70/30 canary rule and two declared
// sidecars that never connect.
func startControl(t *testing.T) *server.Server {
	t.Helper()
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	t.Cleanup(func() { _ = cp.Close() })
	mesh := `kind: Service
name: orders
spec:
  versions:
    - name: v1
      endpoints: [{address: "127.0.0.1:1"}]
    - name: v2
      endpoints: [{address: "127.0.0.1:2"}]
---
kind: TrafficRule
name: orders
spec:
  service: orders
  routes:
    - name: split
      split: [{version: v1, weight: 70}, {version: v2, weight: 30}]
`
	for _, n := range []string{"edge-a", "edge-b"} {
		mesh += "---\nkind: Sidecar\nname: " + n + "\nspec:\n  service: orders\n  outbound: 127.0.0.1:0\n"
	}
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	return cp
}

// apiPaths are the paths the page's script fetches.
func apiPaths(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("mesh.html")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range regexp.MustCompile(`getJSON\("([^"]+)"\)`).FindAllStringSubmatch(string(b), -1) {
		paths = append(paths, m[1])
	}
	if len(paths) < 3 {
		t.Fatalf("the page fetches %v; want at least status, telemetry and the traffic rules", paths)
	}
	return paths
}

// TestPageAPIIsServedAndGuarded checks the page against the real server:
// /ui itself is served to anyone (a static page), and every JSON path the
// page's script fetches exists and answers JSON to an operator's token,
// and 401 without one. A path renamed in the API but not in the page (or
// the other way) fails here.
func TestPageAPIIsServedAndGuarded(t *testing.T) {
	cp := startControl(t)
	code, body := meshtest.Do(t, "GET", cp.URL()+"/ui", "", "Authorization", "")
	if code != 200 || !strings.Contains(body, "<title>Weft mesh</title>") {
		t.Fatalf("GET /ui with no token: %d, want 200 and the page:\n%.200s", code, body)
	}
	if code, _ := meshtest.Do(t, "POST", cp.URL()+"/ui", "x", "Authorization", ""); code != 405 {
		t.Errorf("POST /ui: %d, want 405 (the page changes nothing)", code)
	}
	for _, p := range apiPaths(t) {
		code, body := meshtest.Do(t, "GET", cp.URL()+p, "")
		var v any
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Errorf("GET %s as the admin: %d, want 200 and JSON:\n%.300s", p, code, body)
		}
		if code, body := meshtest.Do(t, "GET", cp.URL()+p, "", "Authorization", ""); code != 401 {
			t.Errorf("GET %s with no token: %d, want 401: %.300s", p, code, body)
		}
		if code, _ := meshtest.Do(t, "GET", cp.URL()+p, "", "Authorization", "Bearer not-a-token"); code != 401 {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, code)
		}
	}
}

// TestPageRendersWithTokenOnly renders /ui in headless Chromium against
// the real server twice. With no token the API refuses the page's calls:
// it says HTTP 401 and shows no data. With the operator's token in the
// URL's fragment it loads: the revision, sidecar and module counts the
// status API gives, a row per declared sidecar with its desired version,
// not in sync, not watching and with no last ack (it never connected).
func TestPageRendersWithTokenOnly(t *testing.T) {
	cp := startControl(t)

	page := browsertest.Render(t, cp.URL()+"/ui?refresh=100000", 2000*time.Millisecond)
	if strings.Contains(page.DOM, `data-loaded="true"`) {
		t.Fatalf("the page loaded its data with no token:\n%s", page.DOM)
	}
	if !regexp.MustCompile(`<div id="error">Error: /v1/[a-z]+: HTTP 401</div>`).MatchString(page.DOM) {
		t.Fatalf("the page does not say the API refused it:\n%s", page.DOM)
	}
	if strings.Contains(page.DOM, "<tr data-node=") {
		t.Fatalf("the page shows sidecars with no token:\n%s", page.DOM)
	}

	code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/status", "")
	var st server.Status
	if code != 200 || json.Unmarshal([]byte(out), &st) != nil || len(st.Nodes) != 2 {
		t.Fatalf("status: %d %s", code, out)
	}
	page = browsertest.Render(t, cp.URL()+"/ui?refresh=100000#token="+cp.AdminToken(), 2000*time.Millisecond)
	dom := page.DOM
	if !strings.Contains(dom, `data-loaded="true"`) || !strings.Contains(dom, `<div id="error"></div>`) {
		t.Fatalf("the page did not load its data with the admin token:\n%s", dom)
	}
	head := fmt.Sprintf(`<span id="revision">revision %d · 2 sidecars · %d modules</span>`, st.Revision, st.Modules)
	if !strings.Contains(dom, head) {
		t.Errorf("the header is not %s:\n%s", head, dom)
	}
	for _, n := range st.Nodes {
		row := regexp.MustCompile(`<tr data-node="` + regexp.QuoteMeta(n.Node) + `">.*?</tr>`).FindString(dom)
		// Not watching, and no last ack: a sidecar that never
		// acknowledged has no time to show (not the zero time's).
		if n.Desired == "" || !strings.Contains(row, `<td>default/orders</td>`) || !strings.Contains(row, `class="desired">`+n.Desired+`<`) ||
			!strings.Contains(row, `class="applied">–<`) || !strings.Contains(row, `class="warn">no</td><td>no</td><td>–</td>`) {
			t.Errorf("sidecar %s (desired %q): row %q", n.Node, n.Desired, row)
		}
	}
	if strings.Contains(dom, cp.AdminToken()) {
		t.Errorf("the token is written into the page")
	}
}
