package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every subcommand's --help prints its usage and exits 0; validate does
// not take --help for a file name.
func TestHelpExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildWeft(t)
	for _, args := range [][]string{
		{"proxy", "--help"}, {"control", "--help"}, {"ctl", "--help"}, {"ctl", "apply", "--help"},
		{"demo", "--help"}, {"bench", "--help"}, {"filter", "--help"}, {"validate", "--help"}, {"validate", "-h"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("weft %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		if !strings.Contains(strings.ToLower(string(out)), "usage") {
			t.Errorf("weft %s printed no usage:\n%s", strings.Join(args, " "), out)
		}
		if strings.Contains(string(out), "no such file") {
			t.Errorf("weft %s took the flag for a file:\n%s", strings.Join(args, " "), out)
		}
	}
}

// validate finds a filter's missing .wasm file (with file:line and field),
// and checks mesh resource files together as one mesh.
func TestValidateWasmAndMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildWeft(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("sidecar.yaml", `listeners:
  - name: main
    address: 127.0.0.1:10000
    filters: [auth]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: c}
clusters:
  - name: c
    endpoints: [{address: "127.0.0.1:1"}]
filters:
  - name: auth
    module: {path: plugins-auth.wasm}
`)
	out, err := exec.Command(bin, "validate", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), cfg+":16: filters[0].module.path:") || !strings.Contains(string(out), "does not exist") {
		t.Fatalf("missing .wasm: %v\n%s", err, out)
	}
	write("plugins-auth.wasm", "\x00asm\x01\x00\x00\x00")
	if out, err := exec.Command(bin, "validate", cfg).CombinedOutput(); err != nil {
		t.Fatalf("with the module present: %v\n%s", err, out)
	}

	// The README's mesh is valid; a dangling reference across files is not.
	if out, err := exec.Command(bin, "validate", "../../examples/mesh/reviews.yaml").CombinedOutput(); err != nil || !strings.Contains(string(out), "ok (mesh resources)") {
		t.Fatalf("examples/mesh: %v\n%s", err, out)
	}
	rule := write("rule.yaml", `kind: TrafficRule
name: ratings
spec:
  service: ratings
  routes: [{version: v9}]
`)
	out, err = exec.Command(bin, "validate", "../../examples/mesh/reviews.yaml", rule).CombinedOutput()
	if err == nil || !strings.Contains(string(out), rule+":1:") || !strings.Contains(string(out), "ratings") {
		t.Fatalf("dangling service: %v\n%s", err, out)
	}
}

// TestValidateWarnsOfStrictPolicyWithoutSidecar: a valid mesh whose strict
// Policy covers an endpoint with no sidecar passes, with a warning naming
// the file, the Policy and the endpoint.
func TestValidateWarnsOfStrictPolicyWithoutSidecar(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(f, []byte(`kind: Service
name: orders
spec:
  versions:
    - {name: v1, endpoints: [{address: "10.0.0.1:15006", sidecar: true}]}
    - {name: v2, endpoints: [{address: "10.0.0.2:8080"}]}
---
kind: Policy
name: strict
spec: {services: [orders], mtls: strict}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	if err := runValidate([]string{f}, &out, &errw); err != nil {
		t.Fatalf("validate: %v\n%s%s", err, &out, &errw)
	}
	want := "warning: " + f + ":8: Policy default/strict: spec.services[0]: mtls is strict, but service default/orders version v2 endpoint 10.0.0.2:8080 has no sidecar"
	if !strings.Contains(errw.String(), want) || strings.Contains(errw.String(), "10.0.0.1") || !strings.Contains(out.String(), "ok (mesh resources)") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s\nwant %q", &out, &errw, want)
	}
}

// weft validate reads weft's Kubernetes custom resources (as kubectl
// applies them) with the same validator, beside mesh files, and places
// each problem at its document's line.
func TestValidateCustomResources(t *testing.T) {
	dir := t.TempDir()
	svc := filepath.Join(dir, "mesh.yaml")
	crs := filepath.Join(dir, "crs.yaml")
	if err := os.WriteFile(svc, []byte("kind: Service\nname: cart\nnamespace: shop\nspec: {endpoints: [{address: \"10.0.0.1:80\"}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(policyServices string) {
		t.Helper()
		if err := os.WriteFile(crs, []byte(`apiVersion: weftmesh.io/v1alpha1
kind: Filter
metadata: {name: authz, namespace: shop}
spec:
  module: {sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
  apply: {services: [cart]}
---
apiVersion: weftmesh.io/v1alpha1
kind: Policy
metadata: {name: cart, namespace: shop}
spec: {services: [`+policyServices+`], mtls: permissive}
`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cart")
	var out, errw bytes.Buffer
	if err := runValidate([]string{svc, crs}, &out, &errw); err != nil || !strings.Contains(out.String(), crs+": ok (mesh resources)") {
		t.Fatalf("valid custom resources: %v\n%s%s", err, &out, &errw)
	}
	write("nope")
	out.Reset()
	errw.Reset()
	err := runValidate([]string{svc, crs}, &out, &errw)
	want := crs + `:8: Policy shop/cart: spec.services[0]: service "nope" does not exist`
	if err == nil || !strings.Contains(errw.String(), want) {
		t.Fatalf("an invalid Policy: %v\nstderr:\n%s\nwant %q", err, &errw, want)
	}
}
