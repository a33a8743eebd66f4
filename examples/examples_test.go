// Package examples keeps the example configs true: examples/sidecar.yaml
// runs in front of weft's bench upstream, and every example YAML file
// passes the check its kind gets (the proxy's config.Parse, or the whole
// mesh's validation for mesh resource files).
package examples

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/bench/upstream"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
)

func TestSidecarYAMLServes(t *testing.T) {
	raw, err := os.ReadFile("sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	app, err := upstream.Start(upstream.Config{BodySize: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close() })
	text := strings.NewReplacer("127.0.0.1:8081", app.Addr(), "127.0.0.1:15001", "127.0.0.1:0").Replace(string(raw))
	cfg, err := config.Parse("sidecar.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(context.Background(), proxy.Options{Logger: zap.NewNop(), DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	if err := p.Apply(context.Background(), cfg, []byte(text), ""); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + p.ListenerAddr("app").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 5 {
		t.Fatalf("through the sidecar: %d %q", resp.StatusCode, b)
	}
}

// TestEveryExampleIsValid checks every .yaml under examples/: sidecar
// configs with config.Parse (as weft proxy reads them; the .wasm files
// plugin examples name are built by task wasm, so they are not looked
// for), mesh resource files (documents with a kind:) together as one
// mesh, as weft validate does.
func TestEveryExampleIsValid(t *testing.T) {
	var meshFiles []string
	var resources []*mesh.Resource
	n := 0
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		if isMesh(b) {
			rs, err := mesh.Decode(path, b)
			if err != nil {
				t.Errorf("%v", err)
				return nil
			}
			meshFiles = append(meshFiles, path)
			resources = append(resources, rs...)
			return nil
		}
		if _, err := config.Parse(path, b); err != nil {
			t.Errorf("%v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 || len(meshFiles) == 0 {
		t.Fatalf("checked %d files (%d of mesh resources): examples/ moved?", n, len(meshFiles))
	}
	m := mesh.New(resources)
	if _, err := mesh.Compile(m, mesh.Options{HasModule: func(string) bool { return true },
		ModuleURL: func(d string) string { return "https://control.invalid/v1/modules/" + d }}); err != nil {
		t.Errorf("mesh examples %v: %v", meshFiles, err)
	}
	t.Logf("%d example files valid (%d of mesh resources)", n, len(meshFiles))
}

// isMesh reports whether a YAML file holds mesh resources (a top-level
// kind:), as weft validate decides.
func isMesh(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("kind:")) {
			return true
		}
	}
	return false
}
