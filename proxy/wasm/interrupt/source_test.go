package interrupt

import (
	"testing"

	"github.com/weftmesh/weft/proxy/internal/srcdigest"
)

// Every non-test Go file of the package is part of Version: a file added
// to the package and not to SourceFiles would change its output without
// changing its version, and a host would serve stale results from disk.
func TestSourcesListEveryFile(t *testing.T) {
	if err := srcdigest.CheckListed(".", SourceFiles); err != nil {
		t.Fatal(err)
	}
	if Version() == ([32]byte{}) {
		t.Fatal("Version is zero")
	}
}
