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
	// A burst of writes settles into one change.
	for i := 2; i <= 6; i++ {
		write(t, dir, "a.yaml", svc("a", "127.0.0.1:"+string(rune('0'+i))))
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for st.Revision() == 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a second sync, if any, would land by now
	o, _ := st.Get(mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "a"})
	if st.Revision() != 2 || o.Resource.Service().Endpoints[0].Address != "127.0.0.1:6" {
		t.Fatalf("after a burst: revision %d (want 2), endpoint %v", st.Revision(), o.Resource.Service().Endpoints)
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
