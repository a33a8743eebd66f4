package filtertest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/sdk/filtertest"
)

func writeKitchen(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.wasm")
	if err := os.WriteFile(path, filtertest.BuildGo(t, kitchensink), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommandRun(t *testing.T) {
	wasm := writeKitchen(t)
	var out, errOut bytes.Buffer
	err := filtertest.Command(t.Context(), []string{"run", wasm, "-config", `{"greeting":"yo"}`, "-path", "/deny", "-H", "x-a: 1"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"upstream received: nothing", "client received (local reply):\n  403", "x-denied: 1", "denied", "request /deny", "counter requests 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := filtertest.Command(t.Context(), []string{"run", "-path", "/ok", "-H", "x-remove-me: 1", wasm}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "x-filtered: yes") || strings.Contains(out.String(), "x-remove-me") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestCommandTest(t *testing.T) {
	wasm := writeKitchen(t)
	cases := filepath.Join(t.TempDir(), "cases.yaml")
	write := func(s string) {
		if err := os.WriteFile(cases, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`
config: {greeting: hey}
cases:
  - name: denied
    request: {path: /deny}
    expect: {status: 403, forwarded: false, headers: {x-denied: "1"}, body_contains: denied}
  - name: passes with greeting
    request: {path: /x, headers: {x-remove-me: "1"}, upstream_status: 204}
    expect: {status: 204, upstream_headers: {x-greeting: hey, "!x-remove-me": ""}}
`)
	var out bytes.Buffer
	if err := filtertest.Command(t.Context(), []string{"test", wasm, "-cases", cases}, &out, &out); err != nil {
		t.Fatalf("test: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "PASS denied") || !strings.Contains(out.String(), "2 cases, 0 failed") {
		t.Errorf("output:\n%s", out.String())
	}
	write(`
- name: wrong status
  request: {path: /deny}
  expect: {status: 200}
- name: fine
  request: {path: /x}
  expect: {status: 200}
`)
	out.Reset()
	err := filtertest.Command(t.Context(), []string{"test", wasm, "-cases", cases}, &out, &out)
	if err == nil || !strings.Contains(out.String(), "FAIL wrong status") || !strings.Contains(out.String(), "status 403, want 200") {
		t.Fatalf("a failing case passed: %v\n%s", err, out.String())
	}
}

func TestCommandUsageErrors(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{nil, {"nope"}, {"run"}, {"test", "x.wasm"}, {"run", "/does/not/exist.wasm"}} {
		if err := filtertest.Command(t.Context(), args, &out, &out); err == nil {
			t.Errorf("Command(%q) succeeded", args)
		}
	}
}
