package main

import (
	"testing"

	"github.com/weftmesh/weft/plugins/internal/e2e"
)

// TestExampleConfig keeps examples/plugins/telemetry.yaml valid for the proxy's
// config parser and for the plugin's own.
func TestExampleConfig(t *testing.T) {
	if _, err := parseConfig(e2e.ExampleFilterConfig(t, "telemetry", "telemetry")); err != nil {
		t.Fatal(err)
	}
}
