package proxy

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/testserver"
	"github.com/weftmesh/weft/proxy/wasm/oci"
)

const ociFilterConfig = `
filters:
  - name: tag
    module:
      oci: "{{ref}}"
      verify: {keys: ["{{key}}"]}
    config: "x-tag={{tag}}"
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

// A filter pulled from a real registry (go-containerregistry's, on
// loopback) runs; a module pushed unsigned, or signed by a key the config
// does not trust, is refused with the reason and counted, and the last good
// module keeps serving.
func TestFilterFromOCIRegistryWithSignatures(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/filters/setheader:v1"
	ctx := context.Background()
	if _, err := oci.Push(ctx, ref, guestbuild.GoSDK(t, "setheader"), oci.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	trusted, other := filepath.Join(dir, "trusted"), filepath.Join(dir, "other")
	for _, k := range []string{trusted, other} {
		if err := oci.GenerateKey(k+".key", k+".pub"); err != nil {
			t.Fatal(err)
		}
	}
	sign := func(key string) {
		t.Helper()
		s, err := oci.LoadPrivateKey(key + ".key")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oci.Sign(ctx, ref, s, oci.PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	up := testserver.Start(t, "up")
	vars := map[string]string{"ref": ref, "key": trusted + ".pub", "up": up.Addr, "tag": "v1"}

	// Unsigned: the first config is refused outright.
	modCache := t.TempDir()
	p := newModuleProxy(t, modCache)
	apply := func(vars map[string]string) error { return tryApply(t, p, ociFilterConfig, vars) }
	if err := apply(vars); err == nil || !strings.Contains(err.Error(), "not signed") || !strings.Contains(err.Error(), `filter "tag"`) {
		t.Fatalf("unsigned module: %v", err)
	}
	sign(other)
	if err := apply(vars); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("module signed by an untrusted key: %v", err)
	}
	if n, _ := metricValue(t, p, "weft_wasm_module_refusals_total", "filter", "tag", "stage", "verify"); n != 2 {
		t.Errorf("verify refusals counted %v, want 2", n)
	}

	sign(trusted)
	if err := apply(vars); err != nil {
		t.Fatalf("signed module: %v", err)
	}
	url := "http://" + p.ListenerAddr("main").String()
	cl := &fasthttp.Client{}
	if st, _, _ := get(t, cl, url+"/"); st != 200 || string(up.Last().Header.Peek("X-Tag")) != "v1" {
		t.Fatalf("through the pulled filter: %d, upstream saw x-tag %q", st, up.Last().Header.Peek("X-Tag"))
	}

	// v1 moves to an unsigned module: with pull_policy always the new
	// digest is seen and refused; the signed one keeps serving.
	if _, err := oci.Push(ctx, ref, guestbuild.GoSDK(t, "noop"), oci.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	always := strings.Replace(ociFilterConfig, `oci: "{{ref}}"`, `oci: "{{ref}}"
      pull_policy: always`, 1)
	if err := tryApply(t, p, always, map[string]string{"ref": ref, "key": trusted + ".pub", "up": up.Addr, "tag": "v2"}); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("moved tag to an unsigned module: %v", err)
	}
	if st, _, _ := get(t, cl, url+"/"); st != 200 || string(up.Last().Header.Peek("X-Tag")) != "v1" {
		t.Fatalf("after the refusal: %d, upstream saw x-tag %q, want the last good filter's v1", st, up.Last().Header.Peek("X-Tag"))
	}

	// The registry gone, a sidecar restarted on the same cache serves the
	// module it pulled before (if_not_present), without a round trip.
	srv.Close()
	p2 := newModuleProxy(t, modCache)
	noVerify := strings.Replace(ociFilterConfig, `      verify: {keys: ["{{key}}"]}
`, "", 1)
	if err := tryApply(t, p2, noVerify, vars); err != nil {
		t.Fatalf("cached module with the registry down: %v", err)
	}
	if st, _, _ := get(t, cl, "http://"+p2.ListenerAddr("main").String()+"/"); st != 200 {
		t.Fatalf("restarted sidecar: %d", st)
	}
}
