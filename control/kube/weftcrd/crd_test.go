package weftcrd

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/crds from the Go types")

// crdDir is deploy/kubernetes/crds from this package's directory.
var crdDir = filepath.Join("..", "..", "..", "deploy", "kubernetes", "crds")

// fieldDocs reads the doc comments of struct fields in the packages whose
// types the specs use, as "Type.Field".
func fieldDocs(t *testing.T) map[string]string {
	t.Helper()
	docs := map[string]string{}
	for _, dir := range []string{filepath.Join("..", "..", "mesh"), filepath.Join("..", "..", "..", "proxy", "config")} {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkgs {
			for _, f := range p.Files {
				ast.Inspect(f, func(n ast.Node) bool {
					ts, ok := n.(*ast.TypeSpec)
					if !ok {
						return true
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						return false
					}
					for _, fl := range st.Fields.List {
						doc := fl.Doc.Text()
						if doc == "" {
							doc = fl.Comment.Text()
						}
						for _, name := range fl.Names {
							if d := strings.Join(strings.Fields(doc), " "); d != "" {
								docs[ts.Name.Name+"."+name.Name] = d
							}
						}
					}
					return false
				})
			}
		}
	}
	return docs
}

// The CRD files are what the Go types generate: a field added to a spec
// in control/mesh fails this test until the files are regenerated.
func TestCRDFiles(t *testing.T) {
	docs := fieldDocs(t)
	if docs["FilterSpec.Module"] == "" && docs["SidecarSpec.Outbound"] == "" {
		t.Fatal("no field docs read")
	}
	for _, k := range Kinds {
		want, err := k.Render(docs)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(crdDir, k.FileName())
		if *update {
			if err := os.MkdirAll(crdDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v: run go test ./control/kube/weftcrd -run TestCRDFiles -update", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the Go types generate: run go test ./control/kube/weftcrd -run TestCRDFiles -update", p)
		}
	}
}
