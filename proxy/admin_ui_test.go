package proxy

import (
	"fmt"
	"regexp"
	"strconv"
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
        domains: ["*", {{domains}}]
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
// traffic and checks that the page shows its routes, clusters, request
// counts, a rate and latency at its first poll, that a long domain list
// does not widen the page past 1280 px, and that it draws something.
func TestAdminUI(t *testing.T) {
	up := testserver.Start(t, "up")
	var domains []string
	for i := 0; i < 12; i++ {
		domains = append(domains, fmt.Sprintf("%q", fmt.Sprintf("service-%02d.a-rather-long-namespace.svc.cluster.local", i)))
	}
	p, url := startProxy(t, adminUIConfig, map[string]string{"up": up.Addr, "setheader": guestFile(t, t.TempDir(), "setheader"), "domains": strings.Join(domains, ", ")})
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
	// One poll only (refresh far beyond the budget): rates and latency
	// must not wait for a second one.
	page := browsertest.Render(t, "http://"+a.Addr().String()+"/ui?refresh=100000", 2500*time.Millisecond)
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
	r := row(`<tr data-route="api" data-cluster="up">.*?</tr>`)
	if !strings.Contains(r, `class="num requests">30<`) {
		t.Fatalf("api traffic row: %s", r)
	}
	for _, re := range []string{`class="num rps"[^>]*>([0-9.]+)<`, `class="num p50">([0-9.]+) ms<`, `class="num p99">([0-9.]+) ms<`} {
		m := regexp.MustCompile(re).FindStringSubmatch(r)
		if m == nil {
			t.Fatalf("api traffic row has no number for %s at the first poll: %s", re, r)
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v <= 0 {
			t.Fatalf("api traffic row: %s is %q, want > 0: %s", re, m[1], r)
		}
	}
	if r := row(`<tr data-route="teapot" data-cluster="">.*?</tr>`); !strings.Contains(r, `class="num requests">4<`) {
		t.Fatalf("teapot traffic row: %s", r)
	}
	r = row(`<tr data-route="api"><td><span class="clip" title="main">main</span></td>.*?</tr>`)
	if !strings.Contains(r, "prefix /api") || !strings.Contains(r, `class="target"><span class="clip" title="up">up<`) {
		t.Fatalf("api route row: %s", r)
	}
	// The long domain list is cut to one line, all of it in the tooltip.
	if !regexp.MustCompile(`class="vhost"><span class="clip" title="all \(\*, [^"]*service-11\.a-rather-long-namespace\.svc\.cluster\.local\)">`).MatchString(r) {
		t.Fatalf("api route row does not clip the domain list with a tooltip: %s", r)
	}
	if m := regexp.MustCompile(`<body data-width="(\d+)"`).FindStringSubmatch(dom); m == nil {
		t.Fatalf("the page did not record its width:\n%s", dom)
	} else if w, _ := strconv.Atoi(m[1]); w > 1280 {
		t.Fatalf("the page is %d px wide in a 1280 px window: it scrolls sideways", w)
	}
	if r := row(`<tr data-cluster="up">.*?</tr>`); !strings.Contains(r, up.Addr) || !strings.Contains(r, `class="num sent">30<`) {
		t.Fatalf("cluster row: %s", r)
	}
	// The plugin's accounting: one VM, its memory, no traps.
	if r := row(`<tr data-plugin="tagger">.*?</tr>`); !strings.Contains(r, `<td><span class="clip" title="tagger">tagger</span></td><td class="num">1</td>`) || !strings.Contains(r, " MiB") {
		t.Fatalf("plugin row: %s", r)
	}
	if !strings.Contains(dom, "node ui-node · config "+p.Version()) {
		t.Fatalf("header does not name the node and version %s", p.Version())
	}
	browsertest.CheckPicture(t, page.Screenshot, 1000, 600, 8)
}
