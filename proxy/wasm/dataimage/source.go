package dataimage

import (
	"crypto/sha256"
	"embed"
	"sync"
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
var Version = sync.OnceValue(func() [32]byte {
	h := sha256.New()
	for _, f := range SourceFiles {
		b, err := sources.ReadFile(f)
		if err != nil {
			panic("dataimage: embedded source " + f + ": " + err.Error())
		}
		h.Write([]byte(f))
		h.Write(b)
	}
	var v [32]byte
	h.Sum(v[:0])
	return v
})
