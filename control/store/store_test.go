package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftmesh/weft/control/mesh"
)

func compile(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) {
	return mesh.Compile(m, mesh.Options{})
}

func res(t testing.TB, y string) []*mesh.Resource {
	t.Helper()
	rs, err := mesh.Decode("t", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

const svc = `kind: Service
name: a
spec: {endpoints: [{address: "127.0.0.1:1"}]}
---
kind: Sidecar
name: n1
spec: {outbound: "127.0.0.1:0"}
---
kind: Sidecar
name: n2
spec: {outbound: "127.0.0.1:0", egress: [a]}
`

func TestApplyVersionsAndPersistence(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Compile: compile})
	if err != nil {
		t.Fatal(err)
	}
	r1, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)})
	if err != nil || r1.Revision != 1 || len(r1.Changed) != 3 {
		t.Fatalf("first apply: %+v %v", r1, err)
	}
	changed := s.Changed()
	// The same content again changes nothing: same revision, no wake-up.
	r2, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)})
	if err != nil || r2.Revision != 1 || len(r2.Changed) != 0 {
		t.Fatalf("no-op apply: %+v %v", r2, err)
	}
	select {
	case <-changed:
		t.Fatal("a no-op woke watchers")
	default:
	}
	// A new service changes n1 (which may call every service) but not n2
	// (egress: [a]): n2 keeps its version.
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, "kind: Service\nname: b\nspec: {endpoints: [{address: '127.0.0.1:2'}]}")}); err != nil {
		t.Fatal(err)
	}
	<-changed
	if s.Node("n1").Version != "2" || s.Node("n2").Version != "1" {
		t.Fatalf("versions: n1 %s n2 %s, want 2 and 1", s.Node("n1").Version, s.Node("n2").Version)
	}
	if o, _ := s.Get(mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"}); o.Resource.ResourceVersion != 1 || o.Source != SourceAPI {
		t.Fatalf("service a: %+v", o)
	}

	// Reopened from disk: same revision, resources and node versions.
	s2, err := Open(Options{Dir: dir, Compile: compile})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Revision() != 2 || len(s2.List("")) != 4 || s2.Node("n1").Version != "2" || s2.Node("n2").Version != "1" ||
		string(s2.Node("n1").Body) != string(s.Node("n1").Body) {
		t.Fatalf("reloaded: revision %d, %d resources, n1 %s, n2 %s", s2.Revision(), len(s2.List("")), s2.Node("n1").Version, s2.Node("n2").Version)
	}
}

func TestSourcesOwnTheirResources(t *testing.T) {
	s, err := Open(Options{Compile: compile, FileSource: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(Change{Who: "file", Source: SourceFile, Puts: res(t, svc), ReplaceSource: true}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, "kind: Service\nname: a\nspec: {endpoints: [{address: '127.0.0.1:9'}]}")})
	var ce *ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "owned by the file source (t); edit t in the watched directory") {
		t.Fatalf("API write over a file resource: %v", err)
	}
	// The API adds its own; a file re-sync leaves it alone but removes the
	// file resources no longer in the directory.
	if _, err := s.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, "kind: Service\nname: c\nspec: {endpoints: [{address: '127.0.0.1:3'}]}")}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Apply(Change{Who: "file", Source: SourceFile, Puts: res(t, "kind: Service\nname: a\nspec: {endpoints: [{address: '127.0.0.1:1'}]}"), ReplaceSource: true})
	if err != nil || len(r.Changed) != 2 {
		t.Fatalf("re-sync: %+v %v", r, err)
	}
	if len(s.List(mesh.KindSidecar)) != 0 || len(s.List(mesh.KindService)) != 2 {
		t.Fatalf("after re-sync: %d sidecars, %d services", len(s.List(mesh.KindSidecar)), len(s.List(mesh.KindService)))
	}
	// A refused change leaves the revision and resources alone.
	rev := s.Revision()
	_, err = s.Apply(Change{Who: "u", Source: SourceAPI, Deletes: []Delete{{Key: mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "nope"}}}})
	var nf *NotFoundError
	if !errors.As(err, &nf) || s.Revision() != rev {
		t.Fatalf("delete missing: %v, revision %d→%d", err, rev, s.Revision())
	}
}

// A file source's resources name their file; when the control plane runs
// without a file source, they are orphans the API may take over.
func TestOrphanedFileResourcesTakenOverByAPI(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Compile: compile, FileSource: true})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := mesh.Decode("mesh/a.yaml", []byte(svc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(Change{Who: "file", Source: SourceFile, Puts: rs, ReplaceSource: true}); err != nil {
		t.Fatal(err)
	}
	a := mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"}
	if o, _ := s.Get(a); o.Owner() != "file:mesh/a.yaml" {
		t.Fatalf("owner %q, want file:mesh/a.yaml", o.Owner())
	}
	newA := "kind: Service\nname: a\nspec: {endpoints: [{address: '127.0.0.1:9'}]}"
	_, err = s.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, newA)})
	if err == nil || !strings.Contains(err.Error(), "mesh/a.yaml") {
		t.Fatalf("API write over a file resource must name its file: %v", err)
	}

	// Restarted on the same data with a file source: still locked, and the
	// file is remembered.
	s2, err := Open(Options{Dir: dir, Compile: compile, FileSource: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, newA)}); err == nil || !strings.Contains(err.Error(), "mesh/a.yaml") {
		t.Fatalf("after a restart with a file source: %v", err)
	}

	// Restarted without one: orphans, shown so; the API replaces one (and
	// owns it from then on) and deletes another.
	s3, err := Open(Options{Dir: dir, Compile: compile})
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := s3.Get(a); !o.Orphaned || !strings.Contains(o.Owner(), "orphaned") {
		t.Fatalf("owner without a file source: %q", o.Owner())
	}
	if _, err := s3.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, newA)}); err != nil {
		t.Fatalf("API takes over an orphan: %v", err)
	}
	if o, _ := s3.Get(a); o.Owner() != SourceAPI {
		t.Fatalf("owner after take-over: %q", o.Owner())
	}
	n2 := mesh.Key{Kind: mesh.KindSidecar, Namespace: "default", Name: "n2"}
	if _, err := s3.Apply(Change{Who: "u", Source: SourceAPI, Deletes: []Delete{{Key: n2}}}); err != nil {
		t.Fatalf("API deletes an orphan: %v", err)
	}
}
