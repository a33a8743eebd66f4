package ctl_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/ctl"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
)

func run(t *testing.T, cp *server.Server, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	err := ctl.Command(context.Background(), append([]string{"-server", cp.URL(), "-ca", cp.CAFile(), "-token-file", cp.AdminTokenFile()}, args...), &out, &errw)
	return out.String() + errw.String(), err
}

func TestCtl(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(file, []byte(meshtest.Sprintf(`kind: Service
name: orders
spec:
  versions:
    - {name: v1, endpoints: [{address: %q}]}
    - {name: v2, endpoints: [{address: %q}]}
---
kind: Sidecar
name: s1
spec: {outbound: "127.0.0.1:0"}
`, a.Addr, b.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, cp, "apply", "-f", file); err != nil || !strings.Contains(out, "Service default/orders: changed") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL()})

	// No rule yet: set-weight creates one.
	if out, err := run(t, cp, "set-weight", "orders", "v1=0,v2=100"); err != nil || !strings.Contains(out, "TrafficRule default/orders: changed") {
		t.Fatalf("set-weight: %v\n%s", err, out)
	}
	meshtest.Eventually(t, "traffic on v2", func() bool {
		_, body, _, err := s1.Get("orders", "/")
		return err == nil && body == "b"
	})
	// And then rewrites its split.
	if out, err := run(t, cp, "set-weight", "orders", "v1=100,v2=0"); err != nil {
		t.Fatalf("set-weight: %v\n%s", err, out)
	}
	meshtest.Eventually(t, "traffic on v1", func() bool {
		_, body, _, err := s1.Get("orders", "/")
		return err == nil && body == "a"
	})
	if _, err := run(t, cp, "set-weight", "orders", "v1=60,v2=30"); err == nil || !strings.Contains(err.Error(), "add up to 90") {
		t.Fatalf("bad weights: %v", err)
	}
	if _, err := run(t, cp, "set-weight", "orders", "v1=50,v3=50"); err == nil || !strings.Contains(err.Error(), `no version "v3"`) {
		t.Fatalf("unknown version: %v", err)
	}

	out, err := run(t, cp, "get", "trafficrules", "orders")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mesh.Decode("get", []byte(out))
	if err != nil || len(rs) != 1 || rs[0].TrafficRule().Routes[0].Split[0].Weight != 100 {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if out, err := run(t, cp, "get", "services", "-o", "json"); err != nil || !strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Fatalf("get -o json: %v\n%s", err, out)
	}

	meshtest.Eventually(t, "s1 in sync", func() bool {
		out, err := run(t, cp, "status")
		return err == nil && strings.Contains(out, "s1") && strings.Contains(out, "yes")
	})

	wasm := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(wasm, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, cp, "modules", "push", wasm)
	if err != nil || len(strings.TrimSpace(out)) != 64 || !cp.Registry().Has(strings.TrimSpace(out)) {
		t.Fatalf("modules push: %v %q", err, out)
	}

	if out, err := run(t, cp, "delete", "trafficrule", "orders"); err != nil || !strings.Contains(out, "changed") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if _, err := run(t, cp, "get", "trafficrule", "orders"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := run(t, cp, "frobnicate"); err == nil {
		t.Fatal("an unknown command succeeded")
	}
}

// Resources from a file source show their file as owner; a write through
// the API names that file; restarted without -dir on the same data, the
// API takes them over.
func TestCtlOwnership(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	data, dir := t.TempDir(), t.TempDir()
	file := filepath.Join(dir, "reviews.yaml")
	if err := os.WriteFile(file, []byte(meshtest.Sprintf(`kind: Service
name: reviews
spec:
  versions:
    - {name: v1, endpoints: [{address: %q}]}
    - {name: v2, endpoints: [{address: %q}]}
---
kind: TrafficRule
name: reviews
spec:
  service: reviews
  routes: [{split: [{version: v1, weight: 100}, {version: v2, weight: 0}]}]
`, a.Addr, b.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := meshtest.StartControl(t, server.Options{DataDir: data, ConfigDir: dir})
	out, err := run(t, cp, "get", "services")
	if err != nil || !strings.Contains(out, "OWNER") || !strings.Contains(out, "file:"+file) {
		t.Fatalf("get services must show the owning file: %v\n%s", err, out)
	}
	_, err = run(t, cp, "set-weight", "reviews", "v1=50,v2=50")
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), file) {
		t.Fatalf("set-weight over a file resource must name the file: %v", err)
	}
	if _, err := run(t, cp, "delete", "trafficrule", "reviews"); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("delete over a file resource must name the file: %v", err)
	}
	cp.Close()

	// Same data, no -dir: the file source is gone, the API takes over.
	cp2 := meshtest.StartControl(t, server.Options{DataDir: data})
	defer cp2.Close()
	if out, err := run(t, cp2, "get", "trafficrules"); err != nil || !strings.Contains(out, "orphaned") {
		t.Fatalf("get without a file source must say orphaned: %v\n%s", err, out)
	}
	if out, err := run(t, cp2, "set-weight", "reviews", "v1=50,v2=50"); err != nil {
		t.Fatalf("set-weight on an orphan: %v\n%s", err, out)
	}
	if out, err := run(t, cp2, "get", "trafficrule", "reviews"); err != nil || !strings.Contains(out, "owner: api") {
		t.Fatalf("after take-over: %v\n%s", err, out)
	}
	if out, err := run(t, cp2, "delete", "trafficrule", "reviews"); err != nil {
		t.Fatalf("delete after take-over: %v\n%s", err, out)
	}
}

// TestCtlApplyPrintsWarnings: a change the control plane accepts with a
// warning (a strict Policy over an endpoint without a sidecar) prints it.
func TestCtlApplyPrintsWarnings(t *testing.T) {
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	file := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(file, []byte(`kind: Service
name: orders
spec: {endpoints: [{address: "127.0.0.1:9"}]}
---
kind: Policy
name: strict
spec: {services: [orders], mtls: strict}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, cp, "apply", "-f", file)
	if err != nil || !strings.Contains(out, "warning: Policy default/strict: spec.services[0]: mtls is strict, but service default/orders endpoint 127.0.0.1:9 has no sidecar") ||
		!strings.Contains(out, "Policy default/strict: changed") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// status keeps showing it while it holds.
	if out, err := run(t, cp, "status"); err != nil || !strings.Contains(out, "warning: Policy default/strict: spec.services[0]: mtls is strict") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

// TestCtlToken mints a join token with ctl, as the README does, and a
// sidecar joins the mesh with it: stdout is the token alone (for
// `> web-1.token`), stderr says until when and for how many certificates.
func TestCtlToken(t *testing.T) {
	up := meshtest.StartUpstream(t, "a")
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer cp.Close()
	if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", meshtest.Sprintf(`kind: Service
name: orders
spec:
  versions: [{name: v1, endpoints: [{address: %q}]}]
---
kind: Sidecar
name: s1
spec: {outbound: "127.0.0.1:0"}
`, up.Addr)); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	var out, errw bytes.Buffer
	before := time.Now()
	err := ctl.Command(context.Background(), []string{"-server", cp.URL(), "-ca", cp.CAFile(), "-token-file", cp.AdminTokenFile(),
		"token", "s1", "-ttl", "10m", "-uses", "2"}, &out, &errw)
	if err != nil {
		t.Fatalf("token: %v\n%s", err, errw.String())
	}
	token := strings.TrimSpace(out.String())
	if token == "" || strings.ContainsAny(token, " \n") {
		t.Fatalf("stdout is not one token: %q", out.String())
	}
	m := regexp.MustCompile(`^join token for node s1: valid until (\S+) for 2 certificate\(s\); shown once\n$`).FindStringSubmatch(errw.String())
	if m == nil {
		t.Fatalf("stderr: %q", errw.String())
	}
	if until, err := time.Parse(time.RFC3339, m[1]); err != nil || until.Before(before.Add(10*time.Minute).Truncate(time.Second)) || until.After(time.Now().Add(10*time.Minute)) {
		t.Fatalf("valid until %s (%v), want 10m after %s", m[1], err, before.Format(time.RFC3339))
	}

	src := meshtest.JoinWith(t, cp.URL(), meshtest.Roots(t, cp), "s1", token)
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL(), Identity: src})
	meshtest.Eventually(t, "s1, joined with the ctl token, answering", func() bool {
		code, body, _, err := s1.Get("orders", "/")
		return err == nil && code == 200 && body == "a"
	})

	if err := ctl.Command(context.Background(), []string{"-server", cp.URL(), "-ca", cp.CAFile(), "-token-file", cp.AdminTokenFile(), "token"}, &out, &errw); err == nil || !strings.Contains(err.Error(), "usage: token NODE") {
		t.Fatalf("token without a node: %v", err)
	}
}
