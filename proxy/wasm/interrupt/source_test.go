package interrupt

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// Every non-test Go file of the package is part of Version: a file added
// to the package and not to SourceFiles would change the rewrite without
// changing its version, and a host would serve stale rewrites from disk.
func TestSourcesListEveryFile(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			want = append(want, n)
		}
	}
	got := slices.Clone(SourceFiles)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("SourceFiles = %v, the package's files are %v: list them in source.go (SourceFiles and the go:embed line)", got, want)
	}
	if Version() == ([32]byte{}) {
		t.Fatal("Version is zero")
	}
}
