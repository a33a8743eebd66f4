package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftmesh/weft/examples/filters/internal/exbuild"
)

func main() {
	out := flag.String("o", "build/examples", "output directory")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		for _, e := range exbuild.Examples {
			names = append(names, e.Name)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	failed := 0
	for _, n := range names {
		ex, ok := exbuild.Lookup(n)
		if !ok {
			fmt.Fprintf(os.Stderr, "%s: no such example\n", n)
			failed++
			continue
		}
		wasm, err := ex.Build()
		switch {
		case exbuild.IsSkip(err):
			fmt.Printf("%-15s skipped: %v\n", n, err)
			continue
		case err != nil:
			fmt.Fprintf(os.Stderr, "%s\n", err)
			failed++
			continue
		}
		path := filepath.Join(*out, n+".wasm")
		if err := os.WriteFile(path, wasm, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed++
			continue
		}
		fmt.Printf("%-15s %8d bytes  %s\n", n, len(wasm), path)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
