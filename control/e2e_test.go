package control_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/store"
	"github.com/weftmesh/weft/proxy/config"
)

// meshYAML is a service "orders" with versions v1 and v2, a rule splitting
// between them, and one sidecar per id.
func meshYAML(v1, v2 string, w1, w2 int, sidecars ...string) string {
	return servicesYAML(v1, v2, sidecars...) + fmt.Sprintf(`---
kind: TrafficRule
name: orders
spec:
  service: orders
  routes:
    - name: split
      split: [{version: v1, weight: %d}, {version: v2, weight: %d}]
`, w1, w2)
}

// servicesYAML is meshYAML without the rule.
func servicesYAML(v1, v2 string, sidecars ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `kind: Service
name: orders
spec:
  versions:
    - name: v1
      endpoints: [{address: %q}]
    - name: v2
      endpoints: [{address: %q}]
`, v1, v2)
	for _, s := range sidecars {
		fmt.Fprintf(&b, `---
kind: Sidecar
name: %s
spec:
  outbound: 127.0.0.1:0
`, s)
	}
	return b.String()
}

func ruleJSON(w1, w2 int, rv int64) string {
	return fmt.Sprintf(`{"kind":"TrafficRule","name":"orders","namespace":"default","resource_version":%d,
"spec":{"service":"orders","routes":[{"name":"split","split":[{"version":"v1","weight":%d},{"version":"v2","weight":%d}]}]}}`, rv, w1, w2)
}

func body(t *testing.T, sc *meshtest.Sidecar, host string) string {
	t.Helper()
	code, b, _, err := sc.Get(host, "/")
	if err != nil {
		return "error: " + err.Error()
	}
	return strconv.Itoa(code) + " " + b
}

func waitBody(t *testing.T, sc *meshtest.Sidecar, want string) {
	t.Helper()
	meshtest.Eventually(t, fmt.Sprintf("sidecar %s answering %q", sc.ID, want), func() bool { return body(t, sc, "orders") == want })
}

func status(t *testing.T, url string) server.Status {
	t.Helper()
	code, b := meshtest.Do(t, "GET", url+"/v1/status", "")
	if code != 200 {
		t.Fatalf("status: %d %s", code, b)
	}
	var st server.Status
	if err := json.Unmarshal([]byte(b), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func nodeStatus(t *testing.T, url, node string) server.NodeStatus {
	for _, n := range status(t, url).Nodes {
		if n.Node == node {
			return n
		}
	}
	t.Fatalf("node %s not in /v1/status", node)
	return server.NodeStatus{}
}

func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileChangePropagates(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	dir := t.TempDir()
	file := filepath.Join(dir, "mesh.yaml")
	writeFileAtomic(t, file, meshYAML(a.Addr, b.Addr, 100, 0, "s1", "s2"))
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), ConfigDir: dir})
	defer cp.Close()
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL()})
	waitBody(t, s1, "200 a")
	waitBody(t, s2, "200 a")

	// An editor's rename-and-replace.
	writeFileAtomic(t, file, meshYAML(a.Addr, b.Addr, 0, 100, "s1", "s2"))
	waitBody(t, s1, "200 b")
	waitBody(t, s2, "200 b")

	// A broken file is refused; the config in force stays everywhere.
	rev := cp.Store().Revision()
	v1 := s1.Proxy.Version()
	writeFileAtomic(t, file, meshYAML(a.Addr, b.Addr, 10, 10, "s1", "s2"))
	meshtest.Eventually(t, "the file source to report the refusal", func() bool {
		fs := status(t, cp.URL()).FileSource
		return fs != nil && strings.Contains(fs.LastError, "TrafficRule default/orders: spec.routes[0].split: weights add up to 20, want 100")
	})
	if cp.Store().Revision() != rev || s1.Proxy.Version() != v1 || body(t, s1, "orders") != "200 b" {
		t.Fatalf("a refused file changed something: revision %d→%d, version %s→%s", rev, cp.Store().Revision(), v1, s1.Proxy.Version())
	}
}

// TestConfigMapSymlinkSwap lays the directory out as a Kubernetes
// ConfigMap volume does (mesh.yaml → ..data/mesh.yaml, ..data → a
// timestamped directory) and swaps ..data atomically.
func TestConfigMapSymlinkSwap(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	dir := t.TempDir()
	writeVersion := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "mesh.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2024_01_01_00_00_00.1", meshYAML(a.Addr, b.Addr, 100, 0, "s1"))
	if err := os.Symlink("..data/mesh.yaml", filepath.Join(dir, "mesh.yaml")); err != nil {
		t.Fatal(err)
	}
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), ConfigDir: dir})
	defer cp.Close()
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})
	waitBody(t, s1, "200 a")
	writeVersion("..2024_01_01_00_00_00.2", meshYAML(a.Addr, b.Addr, 0, 100, "s1"))
	if err := os.RemoveAll(filepath.Join(dir, "..2024_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitBody(t, s1, "200 b")
}

// count sends n requests through sc and counts answers by body.
func count(t *testing.T, sc *meshtest.Sidecar, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		got[body(t, sc, "orders")]++
	}
	return got
}

func putRule(t *testing.T, url string, w1, w2 int, rv int64) (int, string) {
	return meshtest.Do(t, "PUT", url+"/v1/resources/TrafficRule/default/orders", ruleJSON(w1, w2, rv))
}

func TestAPIChangeSplitsTraffic(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0, "s1"), "Content-Type", "application/yaml"); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})
	waitBody(t, s1, "200 a")
	if got := count(t, s1, 100); got["200 a"] != 100 {
		t.Fatalf("100/0 split: %v", got)
	}

	code, out := putRule(t, cp.URL(), 50, 50, 0)
	if code != 200 {
		t.Fatalf("PUT 50/50: %d %s", code, out)
	}
	want := strconv.FormatInt(cp.Store().Revision(), 10)
	meshtest.Eventually(t, "s1 to apply the 50/50 split", func() bool { return s1.Proxy.Version() == want })
	a0, b0 := a.Hits.Load(), b.Hits.Load()
	got := count(t, s1, 400)
	da, db := a.Hits.Load()-a0, b.Hits.Load()-b0
	if got["200 a"]+got["200 b"] != 400 || da+db != 400 {
		t.Fatalf("50/50 split: answers %v, upstream hits a=%d b=%d", got, da, db)
	}
	// Binomial(400, 0.5): mean 200, sd 10; 120..280 is 8 sd.
	if da < 120 || db < 120 {
		t.Fatalf("50/50 split is not a split: upstream hits a=%d b=%d", da, db)
	}

	if code, out := putRule(t, cp.URL(), 0, 100, 0); code != 200 {
		t.Fatalf("PUT 0/100: %d %s", code, out)
	}
	want = strconv.FormatInt(cp.Store().Revision(), 10)
	meshtest.Eventually(t, "s1 to apply 0/100", func() bool { return s1.Proxy.Version() == want })
	a0 = a.Hits.Load()
	if got := count(t, s1, 100); got["200 b"] != 100 || a.Hits.Load() != a0 {
		t.Fatalf("0/100 split: %v, a got %d more", got, a.Hits.Load()-a0)
	}
	meshtest.Eventually(t, "s1's ACK in /v1/status", func() bool {
		n := nodeStatus(t, cp.URL(), "s1")
		return n.Applied == want && n.InSync && n.LastNack == nil
	})
}

func TestBadChangeRefused(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0, "s1", "s2")); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	sc := []*meshtest.Sidecar{
		meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()}),
		meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL()}),
	}
	for _, s := range sc {
		waitBody(t, s, "200 a")
	}
	rev := cp.Store().Revision()
	versions := []string{sc[0].Proxy.Version(), sc[1].Proxy.Version()}
	applied := []int64{configsApplied(t, sc[0]), configsApplied(t, sc[1])}

	bad := []struct {
		name, method, path, body string
		want                     []string
	}{
		{"weights", "PUT", "/v1/resources/TrafficRule/default/orders", ruleJSON(90, 0, 0),
			[]string{"TrafficRule default/orders", "spec.routes[0].split", "weights add up to 90, want 100"}},
		{"dangling version", "PUT", "/v1/resources/TrafficRule/default/orders",
			strings.Replace(ruleJSON(50, 50, 0), `"v2"`, `"v9"`, 1),
			[]string{"TrafficRule default/orders", "spec.routes[0].split[1].version", `no version "v9"`}},
		{"dangling service", "POST", "/v1/resources",
			"kind: TrafficRule\nname: payments\nspec:\n  service: payments\n  routes: [{version: v1}]\n",
			[]string{"TrafficRule default/payments", "spec.service", `service "payments" does not exist`}},
		{"unknown module", "POST", "/v1/resources",
			"kind: Filter\nname: auth\nspec:\n  module: {sha256: " + strings.Repeat("ab", 32) + "}\n  apply: {all: true}\n",
			[]string{"Filter default/auth", "spec.module.sha256", "not in the registry"}},
		{"conflicting rules", "POST", "/v1/resources",
			"kind: TrafficRule\nname: orders-2\nspec:\n  service: orders\n  routes: [{version: v2}]\n",
			[]string{"TrafficRule default/orders-2", "conflicting rules", "TrafficRule default/orders already routes"}},
		{"delete a referenced service", "DELETE", "/v1/resources/Service/default/orders", "",
			[]string{"TrafficRule default/orders", "spec.service", `service "orders" does not exist`}},
	}
	for _, c := range bad {
		code, out := meshtest.Do(t, c.method, cp.URL()+c.path, c.body)
		if code != http.StatusUnprocessableEntity {
			t.Errorf("%s: status %d, want 422: %s", c.name, code, out)
			continue
		}
		var eb server.ErrorBody
		if err := json.Unmarshal([]byte(out), &eb); err != nil || len(eb.Problems) == 0 {
			t.Errorf("%s: not an error body with problems (%v): %s", c.name, err, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(eb.Error, w) {
				t.Errorf("%s: error does not say %q:\n%s", c.name, w, eb.Error)
			}
		}
	}
	if cp.Store().Revision() != rev {
		t.Fatalf("refused changes moved the revision %d → %d", rev, cp.Store().Revision())
	}
	for i, s := range sc {
		if s.Proxy.Version() != versions[i] || body(t, s, "orders") != "200 a" {
			t.Fatalf("sidecar %s changed after refused changes: version %s→%s", s.ID, versions[i], s.Proxy.Version())
		}
	}
	// A good change behind the refused ones: once it has arrived, so has
	// any snapshot wrongly sent before it, and it must be the one config
	// each sidecar applied (or rejected) since.
	if code, out := putRule(t, cp.URL(), 0, 100, 0); code != 200 {
		t.Fatalf("PUT: %d %s", code, out)
	}
	for i, s := range sc {
		waitBody(t, s, "200 b")
		if got := configsApplied(t, s); got != applied[i]+1 {
			t.Fatalf("sidecar %s took %d configs after refused changes and one good one, want 1", s.ID, got-applied[i])
		}
	}
}

func TestNACKReported(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0, "s1", "s2")); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL()})
	waitBody(t, s1, "200 a")
	waitBody(t, s2, "200 a")
	good := s2.Proxy.Version()

	// s2 gets an inbound listener on a port that is already taken on its
	// host (the upstream's): the snapshot is valid but cannot be applied.
	taken := b.Addr
	sidecar := fmt.Sprintf("kind: Sidecar\nname: s2\nspec:\n  outbound: 127.0.0.1:0\n  inbound: %s\n  app: %s\n", taken, a.Addr)
	if code, out := meshtest.Do(t, "PUT", cp.URL()+"/v1/resources/Sidecar/default/s2", sidecar); code != 200 {
		t.Fatalf("PUT sidecar: %d %s", code, out)
	}
	bad := cp.Store().Node("s2").Version
	var n server.NodeStatus
	meshtest.Eventually(t, "s2's NACK in /v1/status", func() bool {
		n = nodeStatus(t, cp.URL(), "s2")
		return n.LastNack != nil && n.LastNack.Version == bad
	})
	if !strings.Contains(n.LastNack.Error, "address already in use") || n.Applied != good || n.InSync || n.Desired != bad {
		t.Fatalf("NACK status: %+v (nack %+v)", n, *n.LastNack)
	}
	if s2.Proxy.Version() != good || body(t, s2, "orders") != "200 a" {
		t.Fatalf("s2 should keep serving version %s, has %s", good, s2.Proxy.Version())
	}
	if n1 := nodeStatus(t, cp.URL(), "s1"); !n1.InSync || n1.LastNack != nil {
		t.Fatalf("s1 should be untouched: %+v", n1)
	}
	// Fixing the sidecar resource clears the way: the next snapshot applies.
	if code, out := meshtest.Do(t, "PUT", cp.URL()+"/v1/resources/Sidecar/default/s2", "kind: Sidecar\nname: s2\nspec:\n  outbound: 127.0.0.1:0\n"); code != 200 {
		t.Fatalf("PUT sidecar: %d %s", code, out)
	}
	meshtest.Eventually(t, "s2 back in sync", func() bool { return nodeStatus(t, cp.URL(), "s2").InSync })
}

func TestControlPlaneRestart(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	data := t.TempDir()
	cp := meshtest.StartControl(t, server.Options{DataDir: data})
	addr := cp.Addr().String()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0, "s1", "s2")); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL()})
	waitBody(t, s1, "200 a")
	waitBody(t, s2, "200 a")
	version := s1.Proxy.Version()

	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	// Down: sidecars keep serving the config in force through their
	// reconnect attempts.
	for i := 0; i < 20; i++ {
		for _, s := range []*meshtest.Sidecar{s1, s2} {
			if got := body(t, s, "orders"); got != "200 a" {
				t.Fatalf("while the control plane is down, %s answered %q", s.ID, got)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}

	cp2 := meshtest.StartControl(t, server.Options{DataDir: data, Addr: addr})
	defer cp2.Close()
	if cp2.Store().Node("s1").Version != version {
		t.Fatalf("after a restart s1's version is %s, was %s: the state was not kept", cp2.Store().Node("s1").Version, version)
	}
	meshtest.Eventually(t, "both sidecars watching the restarted control plane", func() bool {
		st := status(t, cp2.URL())
		w := 0
		for _, n := range st.Nodes {
			if n.Watching {
				w++
			}
		}
		return w == 2
	})
	// Reconnected sidecars report what they applied: status tells the
	// truth at once, not "applied -, in sync NO" until the next change.
	deadline := time.Now().Add(time.Second)
	for {
		ok := 0
		for _, n := range status(t, cp2.URL()).Nodes {
			if n.Applied == version && n.InSync {
				ok++
			}
		}
		if ok == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("1s after both reconnected, status still does not show them in sync at %s: %+v", version, status(t, cp2.URL()).Nodes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, out := putRule(t, cp2.URL(), 0, 100, 0); code != 200 {
		t.Fatalf("PUT: %d %s", code, out)
	}
	waitBody(t, s1, "200 b")
	waitBody(t, s2, "200 b")
}

func TestBootFromCacheWithControlPlaneDown(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cache := t.TempDir()
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	url := cp.URL()
	if code, out := meshtest.Do(t, "POST", url+"/v1/apply", meshYAML(a.Addr, b.Addr, 0, 100, "s1")); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	first := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: url, CacheDir: cache})
	waitBody(t, first, "200 b")
	version := first.Proxy.Version()
	first.Stop()
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}

	// A new sidecar process: the control plane is down, the cache is not.
	second := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: url, CacheDir: cache})
	meshtest.Eventually(t, "the sidecar to boot from its cached snapshot", func() bool { return second.Proxy.Version() == version })
	waitBody(t, second, "200 b")
}

func TestOptimisticConcurrency(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/resources", meshYAML(a.Addr, b.Addr, 100, 0, "s1")); code != 201 {
		t.Fatalf("create: %d %s", code, out)
	}
	// Creating again conflicts.
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/resources", ruleJSON(50, 50, 0)); code != 409 || !strings.Contains(out, "already exists") {
		t.Fatalf("second create: %d %s", code, out)
	}
	get := func() int64 {
		req, _ := http.NewRequest("GET", cp.URL()+"/v1/resources/trafficrules/default/orders", nil)
		req.Header.Set("Authorization", "Bearer "+cp.AdminToken())
		resp, err := meshtest.APIClient(t, cp).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rv, err := strconv.ParseInt(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
		if err != nil {
			t.Fatalf("ETag %q: %v", resp.Header.Get("ETag"), err)
		}
		return rv
	}
	rv := get()
	// Two writers read rv; the first wins, the second gets 409.
	if code, out := putRule(t, cp.URL(), 60, 40, rv); code != 200 {
		t.Fatalf("first writer: %d %s", code, out)
	}
	if code, out := putRule(t, cp.URL(), 70, 30, rv); code != 409 || !strings.Contains(out, fmt.Sprintf("the request expected %d", rv)) {
		t.Fatalf("second writer: %d %s", code, out)
	}
	// If-Match works the same, and a fresh read succeeds.
	code, out := meshtest.Do(t, "PUT", cp.URL()+"/v1/resources/TrafficRule/default/orders", ruleJSON(70, 30, 0), "If-Match", strconv.Quote(strconv.FormatInt(rv, 10)))
	if code != 409 {
		t.Fatalf("stale If-Match: %d %s", code, out)
	}
	if code, out := putRule(t, cp.URL(), 70, 30, get()); code != 200 {
		t.Fatalf("fresh writer: %d %s", code, out)
	}
	code, out = meshtest.Do(t, "DELETE", cp.URL()+"/v1/resources/TrafficRule/default/orders", "", "If-Match", strconv.FormatInt(rv, 10))
	if code != 409 {
		t.Fatalf("stale delete: %d %s", code, out)
	}
	if code, out := meshtest.Do(t, "DELETE", cp.URL()+"/v1/resources/TrafficRule/default/orders", "", "If-Match", strconv.FormatInt(get(), 10)); code != 200 {
		t.Fatalf("delete: %d %s", code, out)
	}
	if code, _ := meshtest.Do(t, "GET", cp.URL()+"/v1/resources/TrafficRule/default/orders", ""); code != 404 {
		t.Fatalf("deleted rule: GET %d", code)
	}
}

// TestAuditLog: the audit log names the authenticated caller; a header
// naming someone else is ignored.
func TestAuditLog(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	data := t.TempDir()
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("bob editor sha256:"+sha256Hex("bob-token")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := meshtest.StartControl(t, server.Options{DataDir: data, UsersFile: users})
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0, "s1"), "Authorization", "Bearer bob-token", "X-Weft-User", "mallory"); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	putRule(t, cp.URL(), 50, 50, 0) // as the bootstrap admin
	putRule(t, cp.URL(), 50, 40, 0) // refused
	rev := cp.Store().Revision()
	// GET /v1/audit answers the last entries, for admins only.
	code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/audit?limit=2", "")
	var last []store.AuditEntry
	if code != 200 || json.Unmarshal([]byte(out), &last) != nil || len(last) != 2 || last[0].Action != "replace" || last[1].Result != "refused" {
		t.Fatalf("GET /v1/audit?limit=2: %d %s", code, out)
	}
	if code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/audit", "", "Authorization", "Bearer bob-token"); code != 403 {
		t.Fatalf("an editor reading the audit log: %d %s", code, out)
	}
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(data, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []store.AuditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e store.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		es = append(es, e)
	}
	if len(es) != 3 {
		t.Fatalf("want 3 audit lines, got %d: %+v", len(es), es)
	}
	if e := es[0]; e.Who != "user:bob" || e.Action != "apply" || e.Result != "applied" || len(e.Resources) != 3 || e.Time.IsZero() {
		t.Errorf("line 1: %+v", e)
	}
	if e := es[1]; e.Who != "user:admin" || e.Action != "replace" || e.Revision != rev || e.Resources[0] != "TrafficRule default/orders" {
		t.Errorf("line 2: %+v (revision in force %d)", e, rev)
	}
	if e := es[2]; e.Result != "refused" || !strings.Contains(e.Error, "weights add up to 90") || e.Revision != rev {
		t.Errorf("line 3: %+v", e)
	}
}

func TestFilterModuleDistributed(t *testing.T) {
	respHeader := meshtest.Wasm(t, ".", "respheader")
	abort := meshtest.Wasm(t, ".", "abort")
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	upload := func(mod []byte) string {
		req, _ := http.NewRequest("POST", cp.URL()+"/v1/modules", bytes.NewReader(mod))
		req.Header.Set("Authorization", "Bearer "+cp.AdminToken())
		resp, err := meshtest.APIClient(t, cp).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct{ SHA256 string }
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 201 {
			t.Fatalf("upload: %d %v", resp.StatusCode, err)
		}
		return m.SHA256
	}
	hdrSHA, abortSHA := upload(respHeader), upload(abort)
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/modules", "not wasm"); code != 400 || !strings.Contains(out, "not a Wasm binary") {
		t.Fatalf("bad upload: %d %s", code, out)
	}
	mesh := servicesYAML(a.Addr, b.Addr, "s1") + fmt.Sprintf(`---
kind: Filter
name: tag
spec:
  module: {sha256: %s}
  apply: {all: true}
---
kind: Filter
name: fault
spec:
  module: {sha256: %s}
---
kind: TrafficRule
name: orders
spec:
  service: orders
  routes:
    - name: broken
      match: {prefix: /broken}
      version: v1
      fault: {filter: fault, abort: {status: 503, percent: 100}}
    - name: split
      split: [{version: v1, weight: 100}, {version: v2, weight: 0}]
`, hdrSHA, abortSHA)
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})
	meshtest.Eventually(t, "the listener filter fetched from the registry", func() bool {
		code, _, h, err := s1.Get("orders", "/")
		return err == nil && code == 200 && h.Get("x-weft-filter") == "on"
	})
	code, out, _, err := s1.Get("orders", "/broken/x")
	if err != nil || code != 503 || out != "fault injected" {
		t.Fatalf("fault route: %d %q %v", code, out, err)
	}
	cfg := cp.Store().Node("s1").Config
	var fault *config.Filter
	for i, f := range cfg.Filters {
		if f.Name == "fault.orders.default.broken" {
			fault = &cfg.Filters[i]
		}
	}
	if fault == nil || fault.Module.URL != cp.URL()+"/v1/modules/"+abortSHA || string(fault.Config) != `{"abort":{"status":503,"percent":100}}` {
		t.Errorf("compiled config lacks the fault filter (module %s, config {abort...}): %s", abortSHA, cp.Store().Node("s1").Body)
	}
}

func TestTelemetry(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 50, 50, "s1", "s2")); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL(), WithAdmin: true})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: cp.URL(), WithAdmin: true})
	for _, s := range []*meshtest.Sidecar{s1, s2} {
		meshtest.Eventually(t, "a config on "+s.ID, func() bool { return strings.HasPrefix(body(t, s, "orders"), "200 ") })
	}
	meshtest.Eventually(t, "admin addresses reported", func() bool {
		for _, n := range status(t, cp.URL()).Nodes {
			if n.Admin == "" {
				return false
			}
		}
		return true
	})
	ctx := t.Context()
	// Every request the upstreams saw is recorded before each scrape, so
	// the second scrape's window holds exactly the 120 below.
	waitRecorded(t, a.Hits.Load()+b.Hits.Load(), s1, s2)
	cp.ScrapeNow(ctx)
	before := a.Hits.Load() + b.Hits.Load()
	for i := 0; i < 60; i++ {
		body(t, s1, "orders")
		body(t, s2, "orders")
	}
	sent := a.Hits.Load() + b.Hits.Load() - before
	waitRecorded(t, a.Hits.Load()+b.Hits.Load(), s1, s2)
	cp.ScrapeNow(ctx)
	code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/telemetry", "")
	if code != 200 {
		t.Fatalf("telemetry: %d %s", code, out)
	}
	var v struct {
		Services []struct {
			Service                string
			RequestsPerSecond      float64            `json:"requests_per_second"`
			ErrorRate              float64            `json:"error_rate"`
			P50Ms                  float64            `json:"p50_ms"`
			P99Ms                  float64            `json:"p99_ms"`
			RequestsTotal          float64            `json:"requests_total"`
			VersionsRequestsPerSec map[string]float64 `json:"versions_requests_per_second"`
			Sidecars               int
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Services) != 1 || v.Services[0].Service != "default/orders" {
		t.Fatalf("services: %s", out)
	}
	s := v.Services[0]
	if s.RequestsTotal < float64(sent) || s.RequestsPerSecond <= 0 || s.ErrorRate != 0 || s.P50Ms <= 0 || s.P99Ms < s.P50Ms || s.Sidecars != 2 {
		t.Fatalf("orders (sent %d): %+v", sent, s)
	}
	if s.VersionsRequestsPerSec["v1"] <= 0 || s.VersionsRequestsPerSec["v2"] <= 0 {
		t.Fatalf("per-version rates: %+v", s.VersionsRequestsPerSec)
	}
}

// TestUndeclaredSidecarWaits: a sidecar that joins before its Sidecar
// resource exists gets no certificate (its identity is unknown), so no
// config; it keeps trying and gets both once declared.
func TestUndeclaredSidecarWaits(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshYAML(a.Addr, b.Addr, 100, 0)); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	id := meshtest.Join(t, cp, "s9")
	s9 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s9", URL: cp.URL(), Identity: id})
	if id.SVID() != nil || s9.Proxy.Version() != "" {
		t.Fatalf("an undeclared sidecar got a certificate or config %s", s9.Proxy.Version())
	}
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/resources", "kind: Sidecar\nname: s9\nspec: {outbound: '127.0.0.1:0'}"); code != 201 {
		t.Fatalf("declare: %d %s", code, out)
	}
	waitBody(t, s9, "200 a")
	if id.SVID() == nil || id.SVID().ID != "spiffe://weft.local/ns/default/sa/s9" {
		t.Fatalf("s9's identity: %+v", id.SVID())
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestExampleMesh: the example in docs/control-plane.md compiles.
func TestExampleMesh(t *testing.T) {
	b, err := os.ReadFile("testdata/example-mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mesh.Decode("testdata/example-mesh.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := mesh.Compile(mesh.New(rs), mesh.Options{ModuleURL: func(d string) string { return "http://127.0.0.1:7070/v1/modules/" + d }})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Fatalf("want 2 sidecars, got %d", len(out))
	}
}
