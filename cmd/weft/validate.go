package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

// runValidate is `weft validate FILE...`: each file is a sidecar config or
// a file of mesh resources (documents with a kind:); sidecar configs are
// checked alone (with the .wasm files they name), mesh files together as
// one mesh, as the control plane would.
func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: weft validate FILE...

Checks sidecar configs (weft proxy -c FILE), including the Wasm module files
their filters name, and mesh resource files (weft control -dir, weft ctl apply;
documents with a kind:, or weft's Kubernetes custom resources, apiVersion
weftmesh.io/v1alpha1), all mesh files together as one mesh. Every problem is
printed as FILE:LINE: field.path: reason; the exit status is 1 if any file is
invalid.
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		fs.Usage()
		return errors.New("validate: name at least one file")
	}
	bad := 0
	var meshFiles []string
	var resources []*mesh.Resource
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			bad++
			continue
		}
		if isMeshFile(b) {
			decode := mesh.Decode
			if weftcrd.IsManifest(b) { // weft's custom resources, as kubectl applies them
				decode = weftcrd.DecodeManifests
			}
			rs, err := decode(f, b)
			if err != nil {
				fmt.Fprintln(stderr, err)
				bad++
				continue
			}
			meshFiles = append(meshFiles, f)
			resources = append(resources, rs...)
			continue
		}
		c, err := config.Parse(f, b)
		if err == nil {
			err = config.CheckFiles(f, b, c, filepath.Dir(f))
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			bad++
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", f)
	}
	if len(meshFiles) > 0 {
		m := mesh.New(resources)
		_, err := mesh.Compile(m, mesh.Options{ModuleURL: func(d string) string { return "https://control.invalid/v1/modules/" + d }})
		if err != nil {
			fmt.Fprintln(stderr, err)
		}
		for _, w := range mesh.Warnings(m) {
			fmt.Fprintf(stderr, "warning: %v\n", w)
		}
		// A problem is reported against the file of its resource; files
		// without one are fine (as far as the whole mesh goes).
		var merrs mesh.Errors
		inFile := map[string]bool{}
		if errors.As(err, &merrs) {
			for _, e := range merrs {
				inFile[e.File] = true
			}
		}
		for _, f := range meshFiles {
			switch {
			case err != nil && (len(merrs) == 0 || inFile[f]):
				bad++
			default:
				fmt.Fprintf(stdout, "%s: ok (mesh resources)\n", f)
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d files invalid", bad, len(files))
	}
	return nil
}

// isMeshFile reports whether data holds mesh resources: JSON or YAML whose
// first document is a mapping (or a list of them) with a kind.
func isMeshFile(data []byte) bool {
	var n yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&n); err != nil || len(n.Content) == 0 {
		return false
	}
	top := n.Content[0]
	if top.Kind == yaml.SequenceNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if top.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "kind" {
			return true
		}
	}
	return false
}
