package filesource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/store"
)

func svc(name, addr string) string {
	return "kind: Service\nname: " + name + "\nspec: {endpoints: [{address: '" + addr + "'}]}\n"
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSyncDebounceAndErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", svc("a", "127.0.0.1:1"))
	write(t, dir, ".hidden.yaml", "not: [valid")
	write(t, dir, "notes.txt", "ignored")
	st, err := store.Open(store.Options{Compile: func(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) { return mesh.Compile(m, mesh.Options{}) }})
	if err != nil {
		t.Fatal(err)
	}
	src, err := Start(context.Background(), Options{Dir: dir, Store: st, Debounce: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if st.Revision() != 1 || src.Status().Files != 1 || src.Status().LastError != "" {
		t.Fatalf("initial sync: revision %d, %+v", st.Revision(), src.Status())
	}
	// A burst of writes (back to back, well inside the debounce) settles
	// into one change. Wait for the burst's last content: a sync in the
	// middle of the burst would have landed before it, so the revision
	// then tells whether there was one.
	for i := 2; i <= 6; i++ {
		write(t, dir, "a.yaml", svc("a", "127.0.0.1:"+string(rune('0'+i))))
	}
	key := mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"}
	endpoint := func() string {
		o, ok := st.Get(key)
		if !ok || len(o.Resource.Service().Endpoints) == 0 {
			return ""
		}
		return o.Resource.Service().Endpoints[0].Address
	}
	for deadline := time.Now().Add(10 * time.Second); endpoint() != "127.0.0.1:6"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the burst's last write never synced: revision %d, endpoint %q", st.Revision(), endpoint())
		}
	}
	if st.Revision() != 2 {
		t.Fatalf("after a burst: revision %d, want 2 (one change)", st.Revision())
	}
	// The same resource in two files is refused, naming the file.
	write(t, dir, "b.yaml", svc("a", "127.0.0.1:9"))
	err = src.Sync()
	if err == nil || !strings.Contains(err.Error(), "b.yaml:1: Service default/a: given twice") || st.Revision() != 2 {
		t.Fatalf("duplicate across files: %v (revision %d)", err, st.Revision())
	}
	if !strings.Contains(src.Status().LastError, "given twice") {
		t.Fatalf("status: %+v", src.Status())
	}
}

// A file written without pause beside the resources (a log) does not hold
// a sync back.
func TestSyncWithBusyNeighbour(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", svc("a", "127.0.0.1:1"))
	st, err := store.Open(store.Options{Compile: func(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) { return mesh.Compile(m, mesh.Options{}) }})
	if err != nil {
		t.Fatal(err)
	}
	src, err := Start(context.Background(), Options{Dir: dir, Store: st, Debounce: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	log, err := os.Create(filepath.Join(dir, "control.log"))
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	var writes atomic.Int64
	go func() {
		defer close(done)
		for i := 0; i < 5_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := log.WriteString("a line of log\n"); err != nil {
				return
			}
			writes.Add(1)
		}
	}()
	t.Cleanup(func() { close(stop); <-done; _ = log.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for writes.Load() < 1000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	write(t, dir, "a.yaml", svc("a", "127.0.0.1:2"))
	deadline = time.Now().Add(10 * time.Second)
	for st.Revision() == 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the edit did not sync while the neighbour was written (%d writes)", writes.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
