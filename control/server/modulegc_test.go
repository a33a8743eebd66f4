package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/weftmesh/weft/control/registry"
)

// TestModuleGarbageCollection uploads three modules, has a Filter name one
// (so the sidecar's snapshot names it too), and collects with no grace
// period (the registry's own test covers the grace period): only modules
// nothing names go, and a module goes once its Filter moves to another.
func TestModuleGarbageCollection(t *testing.T) {
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true, ModuleGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	upload := func(tag string) string {
		t.Helper()
		code, b := call("POST", "/v1/modules", "\x00asm\x01\x00\x00\x00"+tag)
		var m registry.Module
		if code != 201 || json.Unmarshal([]byte(b), &m) != nil {
			t.Fatalf("upload: %d %s", code, b)
		}
		return m.SHA256
	}
	m1, m2, m3 := upload("one"), upload("two"), upload("three")
	meshWith := func(sha string) string {
		return "kind: Service\nname: orders\nspec: {endpoints: [{address: \"127.0.0.1:9\"}]}\n---\n" +
			"kind: Sidecar\nname: s1\nspec: {outbound: \"127.0.0.1:0\", admin: \"off\"}\n---\n" +
			"kind: Filter\nname: tag\nspec:\n  module: {sha256: " + sha + "}\n  apply: {all: true}\n"
	}
	if code, b := call("POST", "/v1/apply", meshWith(m1)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	gone, err := s.collect(0)
	if err != nil || len(gone) != 2 || !has(gone, m2) || !has(gone, m3) {
		t.Fatalf("collected %v, %v; want %s and %s", gone, err, m2, m3)
	}
	for _, m := range s.Registry().List() {
		if m.SHA256 == m1 && m.Refs != 2 {
			t.Fatalf("%s: %d refs, want 2 (the Filter and s1's snapshot)", m1, m.Refs)
		}
	}
	if code, _ := call("GET", "/v1/modules/"+m2, ""); code != 404 {
		t.Fatalf("a collected module is still served: %d", code)
	}
	if code, _ := call("GET", "/v1/modules/"+m1, ""); code != 200 {
		t.Fatalf("a module in use is not served: %d", code)
	}

	// The Filter moves to a new module: the old one goes, the new stays.
	m4 := upload("four")
	if code, b := call("POST", "/v1/apply", meshWith(m4)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	if gone, err := s.collect(0); err != nil || len(gone) != 1 || gone[0].SHA256 != m1 {
		t.Fatalf("collected %v, %v; want only %s", gone, err, m1)
	}
	if code, b := call("GET", "/v1/modules", ""); code != 200 || strings.Contains(b, m1) || !strings.Contains(b, `"refs": 2`) {
		t.Fatalf("list: %d %s", code, b)
	}
}

func has(ms []registry.Module, sha string) bool {
	for _, m := range ms {
		if m.SHA256 == sha {
			return true
		}
	}
	return false
}
