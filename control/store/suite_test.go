package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/weftmesh/weft/control/internal/etcdtest"
	"github.com/weftmesh/weft/control/mesh"
)

// location is where one store's records live, opened as many times as a
// test asks: reopen is a restarted process, replica a concurrent writer.
type location interface {
	reopen(t *testing.T, o Options) *Store
	replica(t *testing.T, o Options) *Store
}

// fileLocation is a data directory. Two processes never share a state
// file, so a "replica" is a second Store on the same FileBackend.
type fileLocation struct {
	dir string
	fb  *FileBackend
}

func (l *fileLocation) reopen(t *testing.T, o Options) *Store {
	fb, err := NewFileBackend(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	l.fb = fb
	return l.replica(t, o)
}

func (l *fileLocation) replica(t *testing.T, o Options) *Store {
	if l.fb == nil {
		return l.reopen(t, o)
	}
	o.Backend = l.fb
	return openStore(t, o)
}

// etcdLocation is a key prefix in a running etcd cluster.
type etcdLocation struct {
	c      *etcdtest.Cluster
	prefix string
}

func (l *etcdLocation) reopen(t *testing.T, o Options) *Store {
	o.Backend = NewEtcdBackend(l.c.Client(), EtcdOptions{Prefix: l.prefix})
	return openStore(t, o)
}

func (l *etcdLocation) replica(t *testing.T, o Options) *Store { return l.reopen(t, o) }

func openStore(t *testing.T, o Options) *Store {
	t.Helper()
	if o.Compile == nil {
		o.Compile = compile
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStoreSuite runs the same tests on the file store and on etcd (a
// single embedded member; the replication tests use three).
func TestStoreSuite(t *testing.T) {
	suite := []struct {
		name string
		fn   func(*testing.T, location)
	}{
		{"VersionsAndReopen", suiteVersionsAndReopen},
		{"Preconditions", suitePreconditions},
		{"RefusedChangeChangesNothing", suiteRefused},
		{"SourcesOwnTheirResources", suiteSources},
		{"ConcurrentWritersLoseNothing", suiteConcurrent},
	}
	t.Run("file", func(t *testing.T) {
		for _, c := range suite {
			t.Run(c.name, func(t *testing.T) { c.fn(t, &fileLocation{dir: t.TempDir()}) })
		}
	})
	t.Run("etcd", func(t *testing.T) {
		cluster := etcdtest.Start(t, 1)
		for i, c := range suite {
			t.Run(c.name, func(t *testing.T) { c.fn(t, &etcdLocation{c: cluster, prefix: fmt.Sprintf("/suite%d/", i)}) })
		}
	})
}

func suiteVersionsAndReopen(t *testing.T, l location) {
	s := l.reopen(t, Options{})
	if s.Revision() != 0 || len(s.List("")) != 0 {
		t.Fatalf("a new store: revision %d, %d resources", s.Revision(), len(s.List("")))
	}
	r1, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)})
	if err != nil || r1.Revision <= 0 || len(r1.Changed) != 3 || s.Revision() != r1.Revision {
		t.Fatalf("first apply: %+v %v (store at %d)", r1, err, s.Revision())
	}
	changed := s.Changed()
	r2, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)})
	if err != nil || r2.Revision != r1.Revision || len(r2.Changed) != 0 {
		t.Fatalf("no-op apply: %+v %v", r2, err)
	}
	select {
	case <-changed:
		t.Fatal("a no-op woke watchers")
	default:
	}
	r3, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, "kind: Service\nname: b\nspec: {endpoints: [{address: '127.0.0.1:2'}]}")})
	if err != nil || r3.Revision <= r1.Revision {
		t.Fatalf("second change: %+v %v", r3, err)
	}
	<-changed
	v1, v3 := strconv.FormatInt(r1.Revision, 10), strconv.FormatInt(r3.Revision, 10)
	// n1 may call every service, so b changes it; n2 (egress: [a]) keeps
	// its version.
	if s.Node("n1").Version != v3 || s.Node("n2").Version != v1 {
		t.Fatalf("versions: n1 %s n2 %s, want %s and %s", s.Node("n1").Version, s.Node("n2").Version, v3, v1)
	}
	a := mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"}
	if o, _ := s.Get(a); o.Resource.ResourceVersion != r1.Revision || o.Source != SourceAPI {
		t.Fatalf("service a: %+v", o)
	}

	s2 := l.reopen(t, Options{})
	if s2.Revision() != r3.Revision || len(s2.List("")) != 4 || s2.Node("n1").Version != v3 || s2.Node("n2").Version != v1 ||
		string(s2.Node("n1").Body) != string(s.Node("n1").Body) {
		t.Fatalf("reopened: revision %d, %d resources, n1 %s, n2 %s", s2.Revision(), len(s2.List("")), s2.Node("n1").Version, s2.Node("n2").Version)
	}
	if o, _ := s2.Get(a); o.Resource.ResourceVersion != r1.Revision {
		t.Fatalf("reopened service a: resource_version %d, want %d", o.Resource.ResourceVersion, r1.Revision)
	}
	// Deleting a sidecar removes its snapshot, in this store and reopened.
	n2 := mesh.Key{Kind: mesh.KindSidecar, Namespace: "default", Name: "n2"}
	if _, err := s2.Apply(Change{Who: "t", Source: SourceAPI, Deletes: []Delete{{Key: n2}}}); err != nil {
		t.Fatal(err)
	}
	if s2.Node("n2") != nil || l.reopen(t, Options{}).Node("n2") != nil {
		t.Fatal("a deleted sidecar still has a snapshot")
	}
}

func suitePreconditions(t *testing.T, l location) {
	s := l.reopen(t, Options{})
	r1, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)})
	if err != nil {
		t.Fatal(err)
	}
	var ce *ConflictError
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc), CreateOnly: true}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create of an existing resource: %v", err)
	}
	stale := res(t, "kind: Service\nname: a\nresource_version: "+strconv.FormatInt(r1.Revision+100, 10)+"\nspec: {endpoints: [{address: '127.0.0.1:9'}]}")
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: stale}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "read it again") {
		t.Fatalf("a stale resource_version: %v", err)
	}
	fresh := res(t, "kind: Service\nname: a\nresource_version: "+strconv.FormatInt(r1.Revision, 10)+"\nspec: {endpoints: [{address: '127.0.0.1:9'}]}")
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: fresh}); err != nil {
		t.Fatalf("the current resource_version: %v", err)
	}
	a := mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"}
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Deletes: []Delete{{Key: a, ResourceVersion: r1.Revision}}}); !errors.As(err, &ce) {
		t.Fatalf("a delete with a stale resource_version: %v", err)
	}
	var nf *NotFoundError
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Deletes: []Delete{{Key: mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "nope"}}}}); !errors.As(err, &nf) {
		t.Fatalf("a delete of nothing: %v", err)
	}
}

func suiteRefused(t *testing.T, l location) {
	s := l.reopen(t, Options{})
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)}); err != nil {
		t.Fatal(err)
	}
	rev := s.Revision()
	// A sidecar calling a service that does not exist does not compile.
	bad := res(t, "kind: Sidecar\nname: n3\nspec: {outbound: '127.0.0.1:0', egress: [missing]}")
	_, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: bad})
	var me mesh.Errors
	if !errors.As(err, &me) || s.Revision() != rev || s.Node("n3") != nil {
		t.Fatalf("an invalid change: %v; revision %d→%d", err, rev, s.Revision())
	}
	if l.reopen(t, Options{}).Revision() != rev {
		t.Fatal("a refused change was persisted")
	}
}

func suiteSources(t *testing.T, l location) {
	s := l.reopen(t, Options{FileSource: true})
	rs, err := mesh.Decode("mesh/a.yaml", []byte(svc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(Change{Who: "file", Source: SourceFile, Puts: rs, ReplaceSource: true}); err != nil {
		t.Fatal(err)
	}
	newA := "kind: Service\nname: a\nspec: {endpoints: [{address: '127.0.0.1:9'}]}"
	var ce *ConflictError
	if _, err := s.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, newA)}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "mesh/a.yaml") {
		t.Fatalf("an API write over a file resource must name its file: %v", err)
	}
	if _, err := s.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, "kind: Service\nname: c\nspec: {endpoints: [{address: '127.0.0.1:3'}]}")}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Apply(Change{Who: "file", Source: SourceFile, Puts: res(t, "kind: Service\nname: a\nspec: {endpoints: [{address: '127.0.0.1:1'}]}"), ReplaceSource: true})
	if err != nil || len(r.Changed) != 3 { // a moved file, n1 and n2 gone
		t.Fatalf("re-sync: %+v %v", r, err)
	}
	if len(s.List(mesh.KindSidecar)) != 0 || len(s.List(mesh.KindService)) != 2 {
		t.Fatalf("after re-sync: %d sidecars, %d services", len(s.List(mesh.KindSidecar)), len(s.List(mesh.KindService)))
	}
	// Reopened without a file source: orphans the API takes over.
	s2 := l.reopen(t, Options{})
	a := mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"}
	if o, _ := s2.Get(a); !o.Orphaned {
		t.Fatalf("owner without a file source: %q", o.Owner())
	}
	if _, err := s2.Apply(Change{Who: "u", Source: SourceAPI, Puts: res(t, newA)}); err != nil {
		t.Fatalf("the API takes over an orphan: %v", err)
	}
	if o, _ := s2.Get(a); o.Owner() != SourceAPI {
		t.Fatalf("owner after take-over: %q", o.Owner())
	}
}

// suiteConcurrent: writers on two stores over one backend, each adding its
// own services; every write lands, and both stores end on the same state.
func suiteConcurrent(t *testing.T, l location) {
	a, b := l.reopen(t, Options{}), l.replica(t, Options{})
	const writers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				y := fmt.Sprintf("kind: Service\nname: s%d-%d\nspec: {endpoints: [{address: '127.0.0.1:%d'}]}", w, i, 1000+w*each+i)
				rs, err := mesh.Decode("t", []byte(y))
				if err != nil {
					errs <- err
					return
				}
				if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Action: "apply", Puts: rs}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	final := l.reopen(t, Options{})
	if n := len(final.List(mesh.KindService)); n != writers*each {
		t.Fatalf("%d services stored, want %d: a concurrent write was lost", n, writers*each)
	}
	// Every write was its own revision: no two commits shared one.
	revs := map[int64]bool{}
	for _, o := range final.List(mesh.KindService) {
		if revs[o.Resource.ResourceVersion] {
			t.Fatalf("two writes committed at revision %d", o.Resource.ResourceVersion)
		}
		revs[o.Resource.ResourceVersion] = true
	}
}
