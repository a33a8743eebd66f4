package proxy

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/control/ui/browsertest"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const adminUIConfig = `
node: {id: ui-node}
filters:
  - name: tagger
    module: {path: "{{setheader}}"}
    config: "x-tag=ui"
    pool_size: 1
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [tagger]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: api
            match: {prefix: /api}
            route: {cluster: up}
          - name: teapot
            match: {prefix: /tea}
            direct_response: {status: 418}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// TestAdminUI renders the sidecar's /ui in headless Chromium after real
// traffic and checks that the page shows its routes, clusters and request
// counts, and that it draws something.
func TestAdminUI(t *testing.T) {
	up := testserver.Start(t, "up")
	p, url := startProxy(t, adminUIConfig, map[string]string{"up": up.Addr, "setheader": guestFile(t, t.TempDir(), "setheader")})
	a, err := admin.Start("127.0.0.1:0", p, p.Metrics().Registry(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(t.Context())
	c := &fasthttp.Client{}
	for i := 0; i < 30; i++ {
		if code, _, _ := get(t, c, url+"/api/items"); code != 200 {
			t.Fatalf("api: %d", code)
		}
	}
	for i := 0; i < 4; i++ {
		get(t, c, url+"/tea")
	}
	page := browsertest.Render(t, "http://"+a.Addr().String()+"/ui?refresh=400", 2500*time.Millisecond)
	dom := page.DOM
	if !strings.Contains(dom, `data-loaded="true"`) {
		t.Fatalf("the page did not load its data:\n%s", dom)
	}
	row := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no %s in the DOM:\n%s", re, dom)
		}
		return m[0]
	}
	if r := row(`<tr data-route="api" data-cluster="up">.*?</tr>`); !strings.Contains(r, `class="num requests">30<`) || !strings.Contains(r, `class="num rps">`) {
		t.Fatalf("api traffic row: %s", r)
	}
	if r := row(`<tr data-route="teapot" data-cluster="">.*?</tr>`); !strings.Contains(r, `class="num requests">4<`) {
		t.Fatalf("teapot traffic row: %s", r)
	}
	if r := row(`<tr data-route="api"><td>main</td>.*?</tr>`); !strings.Contains(r, "prefix /api") || !strings.Contains(r, `class="target">up<`) {
		t.Fatalf("api route row: %s", r)
	}
	if r := row(`<tr data-cluster="up">.*?</tr>`); !strings.Contains(r, up.Addr) || !strings.Contains(r, `class="num sent">30<`) {
		t.Fatalf("cluster row: %s", r)
	}
	// The plugin's accounting: one VM, its memory, no traps.
	if r := row(`<tr data-plugin="tagger">.*?</tr>`); !strings.Contains(r, `<td>tagger</td><td class="num">1</td>`) || !strings.Contains(r, " MiB") {
		t.Fatalf("plugin row: %s", r)
	}
	if !strings.Contains(dom, "node ui-node · config "+p.Version()) {
		t.Fatalf("header does not name the node and version %s", p.Version())
	}
	browsertest.CheckPicture(t, page.Screenshot, 1000, 600, 8)
}
