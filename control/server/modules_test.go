package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/weftmesh/weft/proxy/wasm/oci"
)

// A Filter naming its module by oci: the control plane pulls it from a real
// registry into its own, pins the resource to the digests, and refuses a
// module the mesh-wide key did not sign, or one its own keys did not.
func TestFilterModulesFromOCI(t *testing.T) {
	regSrv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(regSrv.Close)
	ref := strings.TrimPrefix(regSrv.URL, "http://") + "/filters/f:v1"
	ctx := context.Background()
	module := append([]byte("\x00asm\x01\x00\x00\x00"), "control"...)
	manifest, err := oci.Push(ctx, ref, module, oci.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mesh, other := filepath.Join(dir, "mesh"), filepath.Join(dir, "other")
	for _, k := range []string{mesh, other} {
		if err := oci.GenerateKey(k+".key", k+".pub"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Start(ctx, Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true, VerifyKeys: []string{mesh + ".pub"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	do := func(method, path, body string) (int, string) {
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
	filter := "kind: Filter\nname: f\nspec:\n  module: {oci: \"" + ref + "\"}\n"
	code, body := do("POST", "/v1/apply", filter)
	if code != 422 || !strings.Contains(body, "spec.module.oci") || !strings.Contains(body, "not signed") {
		t.Fatalf("unsigned module: %d %s", code, body)
	}
	if s.Registry().Has(sha256Hex(module)) {
		t.Fatal("a refused module entered the registry")
	}
	// The refusal shows in /v1/status (and so in ctl status).
	if code, st := do("GET", "/v1/status", ""); code != 200 || !strings.Contains(st, `"module_refusals"`) || !strings.Contains(st, "not signed") || !strings.Contains(st, ref) {
		t.Fatalf("status after a refusal: %d %s", code, st)
	}
	sign := func(key string) {
		k, err := oci.LoadPrivateKey(key + ".key")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oci.Sign(ctx, ref, k, oci.PushOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sign(mesh)
	code, body = do("POST", "/v1/apply", filter)
	if code != 200 {
		t.Fatalf("signed module: %d %s", code, body)
	}
	var res WriteResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Resources) != 1 {
		t.Fatalf("apply answer: %v %s", err, body)
	}
	spec, _ := json.Marshal(res.Resources[0].Spec)
	if !strings.Contains(string(spec), `"sha256":"`+sha256Hex(module)+`"`) || !strings.Contains(string(spec), `"manifest":"`+manifest+`"`) {
		t.Fatalf("the resource is not pinned to what was pulled: %s", spec)
	}
	if !s.Registry().Has(sha256Hex(module)) {
		t.Fatal("the pulled module is not in the registry")
	}

	// The filter's own policy holds too: its key did not sign.
	otherPub, _ := os.ReadFile(other + ".pub")
	own := filter + "    verify:\n      keys:\n        - |\n" + indentLines(string(otherPub), "          ")
	own = strings.Replace(own, "  module: {oci: \""+ref+"\"}\n", "  module:\n    oci: \""+ref+"\"\n", 1)
	code, body = do("POST", "/v1/apply", own)
	if code != 422 || !strings.Contains(body, "spec.module.verify") {
		t.Fatalf("filter's own key did not sign: %d %s", code, body)
	}
	sign(other)
	if code, body = do("POST", "/v1/apply", own); code != 200 {
		t.Fatalf("signed by both: %d %s", code, body)
	}
}

func indentLines(s, pre string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(pre + l + "\n")
	}
	return b.String()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
