package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReferenceDocCoversSchema keeps docs/config.md true to the code: every
// YAML field and access log field is documented, and its full example is
// testdata/full.yaml verbatim.
func TestReferenceDocCoversSchema(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for typ, fields := range knownFields() {
		for _, f := range fields {
			if !strings.Contains(text, "| `"+f+"` |") {
				t.Errorf("docs/config.md has no table row for %s field %q", typ, f)
			}
		}
	}
	for _, f := range AccessLogFields() {
		if !strings.Contains(text, "| `"+f+"` |") {
			t.Errorf("docs/config.md does not describe access log field %q", f)
		}
	}
	example, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "## Full example\n\n```yaml\n"+string(example)+"```\n") {
		t.Error("docs/config.md's full example is not testdata/full.yaml; copy it over")
	}
}
