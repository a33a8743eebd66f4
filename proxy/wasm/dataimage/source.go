package dataimage

import (
	"embed"
	"sync"

	"github.com/weftmesh/weft/proxy/internal/srcdigest"
)

// sources are the files whose code decides what Split writes.
// TestSourcesListEveryFile fails when a file is added and not listed.
//
//go:embed dataimage.go source.go
var sources embed.FS

// SourceFiles lists the embedded files (for the test that checks the list).
var SourceFiles = []string{"dataimage.go", "source.go"}

// Version identifies this split: a digest of the code that makes it (see
// interrupt.Version).
var Version = sync.OnceValue(func() [32]byte { return srcdigest.Of(sources, SourceFiles) })
