package store

import (
	"context"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/etcdtest"
)

// A blob collected between Revision and the start of Watch (a replica
// starting as another collects) is still reported: the watch begins at
// the revision, not whenever its goroutine gets to run.
func TestBlobsWatchMissesNothingAfterRevision(t *testing.T) {
	c := etcdtest.Start(t, 1)
	b := NewEtcdBlobs(c.Client(), "/weft-test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const kept, gone = "aa", "bb"
	for _, d := range []string{kept, gone} {
		if err := b.Put(ctx, d, []byte("module "+d)); err != nil {
			t.Fatal(err)
		}
	}
	from, err := b.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Before the watch exists: a delete, then a new blob.
	if err := b.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "cc", []byte("module cc")); err != nil {
		t.Fatal(err)
	}
	type event struct {
		digest  string
		deleted bool
	}
	events := make(chan event, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Watch(ctx, from, func(d string, deleted bool) { events <- event{d, deleted} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	var got []event
	timeout := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case e := <-events:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("after 30 s the watch reported %v, want the delete of %s and the put of cc", got, gone)
		}
	}
	if got[0] != (event{gone, true}) || got[1] != (event{"cc", false}) {
		t.Fatalf("watch from revision %d reported %v, want [{%s true} {cc false}]", from, got, gone)
	}
}
