package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// ExampleFilterConfig parses examples/plugins/NAME.yaml with the proxy's
// config parser and returns the JSON config of its filter named filter, so
// a plugin's test can check its example with the plugin's own parser.
func ExampleFilterConfig(t testing.TB, name, filter string) []byte {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(here), "..", "..", "..", "examples", "plugins", name+".yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, f := range cfg.Filters {
		if f.Name == filter {
			return []byte(f.Config)
		}
	}
	t.Fatalf("%s: no filter %q", path, filter)
	return nil
}
