package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const stagesConfig = `
filters:
  - name: tag
    module: {{module}}
    config: "x-tag=on"
    failure_policy: {{policy}}
    pool_size: 1
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [tag]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: all
            match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// The failure policy holds before a filter ever runs: a fail_open filter
// whose module cannot be fetched (a registry that is down) or compiled (a
// corrupt file) does not keep the sidecar from starting — requests flow
// without it, and it is counted — and the next config that loads it puts
// it in the chain. The same filter with fail_closed refuses the config.
func TestFailurePolicyAtFetchAndCompile(t *testing.T) {
	up := testserver.Start(t, "up")
	dir := t.TempDir()
	down := testserver.RefusedAddr(t) // a registry that is gone
	corrupt := filepath.Join(dir, "corrupt.wasm")
	os.WriteFile(corrupt, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644)
	good := guestFile(t, dir, "setheader")

	p := newModuleProxy(t, t.TempDir())
	apply := func(module, policy string) error {
		return tryApply(t, p, stagesConfig, map[string]string{"module": module, "policy": policy, "up": up.Addr})
	}
	fetch := `{oci: "` + down + `/filters/tag:v1"}`
	compile := `{path: "` + corrupt + `"}`
	for _, m := range []string{fetch, compile} {
		if err := apply(m, "fail_closed"); err == nil {
			t.Fatalf("fail_closed with module %s: the config applied", m)
		}
	}
	cl := &fasthttp.Client{}
	for i, m := range []string{fetch, compile} {
		if err := apply(m, "fail_open"); err != nil {
			t.Fatalf("fail_open with module %s: %v", m, err)
		}
		url := "http://" + p.ListenerAddr("main").String()
		if st, body, _ := get(t, cl, url+"/"); st != 200 || body != "up" {
			t.Fatalf("without the unavailable filter: %d %q", st, body)
		}
		if got := up.Last().Header.Peek("X-Tag"); got != nil {
			t.Fatalf("x-tag %q set by a filter that never loaded", got)
		}
		if n, _ := metricValue(t, p, "weft_wasm_filter_unavailable_total", "filter", "tag"); n != float64(i+1) {
			t.Fatalf("unavailable counted %v, want %d", n, i+1)
		}
	}
	// The next config that loads it puts it in the chain.
	if err := apply(`{path: "`+good+`"}`, "fail_open"); err != nil {
		t.Fatal(err)
	}
	url := "http://" + p.ListenerAddr("main").String()
	if st, _, _ := get(t, cl, url+"/"); st != 200 || string(up.Last().Header.Peek("X-Tag")) != "on" {
		t.Fatalf("after a config that loads it: %d, x-tag %q", st, up.Last().Header.Peek("X-Tag"))
	}
	// Once it ran, a version that cannot load is refused: the last good
	// version keeps serving, whatever the policy.
	if err := apply(compile, "fail_open"); err == nil || !strings.Contains(err.Error(), `filter "tag"`) {
		t.Fatalf("a broken version of a running filter: %v", err)
	}
	if st, _, _ := get(t, cl, url+"/"); st != 200 || string(up.Last().Header.Peek("X-Tag")) != "on" {
		t.Fatalf("the last good version stopped: %d, x-tag %q", st, up.Last().Header.Peek("X-Tag"))
	}
}
