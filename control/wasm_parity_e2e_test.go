package control_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/sdk/wasmbuild"
)

// goGuest builds the test guest proxy/wasm/testdata/guests/gosdk/NAME
// (written with the public Go SDK) from source; it skips the test when Go
// cannot build it here.
func goGuest(t *testing.T, name string) []byte {
	t.Helper()
	root, err := wasmbuild.FindModule("", "github.com/weftmesh/weft")
	if err != nil {
		t.Fatal(err)
	}
	m, err := wasmbuild.Go(context.Background(), wasmbuild.Options{
		Dir: filepath.Join(root, "proxy", "wasm", "testdata", "guests"), Package: "./gosdk/" + name})
	if err != nil {
		if errors.Is(err, wasmbuild.ErrToolchainMissing) {
			t.Skip(err)
		}
		t.Fatalf("build guest %s: %v", name, err)
	}
	return m.Wasm
}

// wasmCompileCache is the wazero compilation cache the repository's tests
// share (as proxy/internal/guestbuild's), so each Go guest is compiled
// once per machine.
func wasmCompileCache(t *testing.T) string {
	dir := filepath.Join(wasmbuild.DefaultCacheDir(), "wazero-compiled")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// echoUpstream answers 200 and copies the request's x- headers into the
// response, so a test sees what the sidecar's filters added.
func echoUpstream(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-") {
				w.Header()["Echo-"+k] = v
			}
		}
		_, _ = io.WriteString(w, "up")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestWasmParityResources: the control plane's resources carry what the
// sidecar YAML offers for Envoy-written filters (issue 17), and a real
// sidecar runs them: a singleton Filter becomes a Wasm service that ticks
// and drains a shared queue a listener filter of its vm_id fills; Service,
// TrafficRule route and Sidecar metadata are what filters read as
// cluster_metadata, route_metadata and listener_metadata, an endpoint's is
// upstream_host_metadata; a Filter's
// stats_tags turn parts of guest metric names into Prometheus labels. A
// bad value is refused with the field named, and what was in force stays.
func TestWasmParityResources(t *testing.T) {
	mods := map[string][]byte{"metadata": goGuest(t, "metadata"), "service": goGuest(t, "service"), "tagged": goGuest(t, "tagged")}
	up := echoUpstream(t)
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	sha := map[string]string{}
	for name, mod := range mods {
		code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/modules", string(mod))
		if code != 201 {
			t.Fatalf("upload %s: %d %s", name, code, out)
		}
		sha[name] = sha256Hex(string(mod))
	}
	mesh := func(statsRegex string) string {
		return fmt.Sprintf(`kind: Service
name: orders
spec:
  endpoints: [{address: %q, metadata: {filter_metadata: {host: {zone: z1}}}}]
  metadata: {filter_metadata: {location: {region: eu, zone: a}}}
---
kind: TrafficRule
name: orders
spec:
  service: orders
  routes:
    - name: api
      match: {prefix: /api}
      metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: required, weight: 2.5}}}
---
kind: Sidecar
name: s1
spec:
  outbound: 127.0.0.1:0
  metadata: {filter_metadata: {team: {name: payments}}}
---
kind: Filter
name: md
spec: {module: {sha256: %s}, apply: {all: true}, order: 1}
---
kind: Filter
name: jobs
spec: {module: {sha256: %s}, singleton: true, vm_id: svc, config: service, apply: {nodes: [s1]}}
---
kind: Filter
name: front
spec: {module: {sha256: %s}, vm_id: svc, config: filter, pool_size: 2, apply: {all: true}, order: 2}
---
kind: Filter
name: tagged
spec:
  module: {sha256: %s}
  apply: {all: true}
  order: 3
  stats_tags:
    - {tag_name: verb, regex: '(_method=([A-Z]+))'}
    - {tag_name: who, regex: %q}
`, up, sha["metadata"], sha["service"], sha["service"], sha["tagged"], statsRegex)
	}
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh("(_user=([a-z]+))"), "Content-Type", "application/yaml"); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL(), WithAdmin: true, WasmCacheDir: wasmCompileCache(t)})

	get := func(path string, hdr ...string) http.Header {
		t.Helper()
		addr := s1.Proxy.ListenerAddr("outbound")
		if addr == nil {
			return nil
		}
		req, _ := http.NewRequest("GET", "http://"+addr.String()+path, nil)
		req.Host = "orders"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := meshtest.HTTP.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return nil
		}
		return resp.Header
	}

	// Metadata, by the property paths Envoy's filters read.
	var h http.Header
	// The sidecar fetches three Go modules and compiles them (seconds each
	// on a busy machine with a cold compilation cache, more under -race).
	deadline := time.Now().Add(2 * time.Minute)
	for h = get("/api/x", "x-user", "alice"); h == nil || h.Get("Echo-X-Route-Auth") == ""; h = get("/api/x", "x-user", "alice") {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar never ran the control plane's filters (version %q)", s1.Proxy.Version())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k, want := range map[string]string{
		"Echo-X-Route-Auth": "required", "Echo-X-Route-Weight": "2.5", "Echo-X-Listener-Team": "payments",
		// cluster_metadata, read on request headers (the route's one
		// cluster) and again on response headers.
		"Echo-X-Cluster-Location": "region=eu,zone=a", "X-Cluster-Location": "region=eu,zone=a",
		// upstream_host_metadata: the endpoint's, once it answered.
		"X-Host-Zone": "z1",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// Off the route with metadata, route_metadata is empty.
	if h := get("/other"); h == nil || h.Get("Echo-X-Route-Auth") != "NOTFOUND" {
		t.Errorf("route_metadata off its route: %v", h)
	}

	// The singleton ticks on its own and drains what the filter enqueues.
	meshtest.Eventually(t, "the singleton service ticking", func() bool {
		h := get("/")
		return h != nil && h.Get("Echo-X-Service-Ticks") != ""
	})
	get("/", "x-enqueue", "a")
	get("/", "x-enqueue", "b")
	meshtest.Eventually(t, "the singleton draining the shared queue", func() bool {
		h := get("/")
		return h != nil && h.Get("Echo-X-Service-Seen") == "seen:a,b"
	})

	// The Filter's stats_tags name the labels (not the default NAME_KEY=VALUE
	// convention, which would say method and user).
	meshtest.Eventually(t, "tagged metrics with the control plane's tag names", func() bool {
		code, body := scrape(t, "http://"+s1.Admin.Addr().String()+"/stats/prometheus")
		if code != 200 {
			return false
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "tagged_requests{") && strings.Contains(line, `verb="GET"`) && strings.Contains(line, `who="alice"`) {
				return true
			}
		}
		return false
	})

	// A bad regex is refused naming the field; the config in force stays.
	v := s1.Proxy.Version()
	code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh("(_user=("), "Content-Type", "application/yaml")
	if code != 422 || !strings.Contains(out, "Filter default/tagged: spec.stats_tags[1].regex: regex: error parsing regexp") {
		t.Fatalf("bad stats tag: %d %s", code, out)
	}
	if s1.Proxy.Version() != v {
		t.Errorf("a refused change reached the sidecar: version %s → %s", v, s1.Proxy.Version())
	}
	if h := get("/api/x"); h == nil || h.Get("Echo-X-Route-Auth") != "required" {
		t.Errorf("after a refused change: %v", h)
	}
}

func scrape(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
