package interrupt

import (
	"embed"
	"sync"

	"github.com/weftmesh/weft/proxy/internal/srcdigest"
)

// sources are the files whose code decides what Instrument writes.
// TestSourcesListEveryFile fails when a file is added and not listed.
//
//go:embed interrupt.go callgraph.go dispatch.go source.go
var sources embed.FS

// SourceFiles lists the embedded files (for the test that checks the list).
var SourceFiles = []string{"interrupt.go", "callgraph.go", "dispatch.go", "source.go"}

// Version identifies this rewrite: a digest of the code that makes it. A
// host that keeps rewritten modules across restarts keys them by it, so a
// changed rewrite never serves a module rewritten by an older one.
var Version = sync.OnceValue(func() [32]byte { return srcdigest.Of(sources, SourceFiles) })
