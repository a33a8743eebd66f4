// Package srcdigest names a version of a package's code by the digest of
// its embedded source files: a host that keeps what the code produced
// (a rewritten module on disk) keys it by that version, so a build whose
// code differs never reads another build's output.
package srcdigest

import (
	"crypto/sha256"
	"embed"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Of is the SHA-256 over each file's name and bytes, in the order given.
// It panics if a file is not in fsys: the list and the go:embed line are
// written together, and a test checks the list against the directory.
func Of(fsys embed.FS, files []string) [32]byte {
	h := sha256.New()
	for _, f := range files {
		b, err := fsys.ReadFile(f)
		if err != nil {
			panic("srcdigest: embedded source " + f + ": " + err.Error())
		}
		h.Write([]byte(f))
		h.Write(b)
	}
	var v [32]byte
	h.Sum(v[:0])
	return v
}

// CheckListed reports an error unless files are exactly the non-test Go
// files of dir: a source file added to a package and not to its list
// would change the package's output without changing its digest.
func CheckListed(dir string, files []string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var want []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			want = append(want, n)
		}
	}
	got := slices.Clone(files)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("the listed sources are %v, the package's files %v: list them (SourceFiles and the go:embed line)", got, want)
	}
	return nil
}
