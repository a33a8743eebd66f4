package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPutOpenReopen(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mod := []byte("\x00asm\x01\x00\x00\x00")
	m, err := r.Put(bytes.NewReader(mod))
	sum := sha256.Sum256(mod)
	if err != nil || m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(mod)) || !r.Has(m.SHA256) {
		t.Fatalf("put: %+v %v", m, err)
	}
	if _, err := r.Put(strings.NewReader("(module)")); err == nil || !strings.Contains(err.Error(), "not a Wasm binary") {
		t.Fatalf("WAT text accepted: %v", err)
	}
	// A restarted registry finds what is on disk.
	r2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r2.Open(m.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if !bytes.Equal(b, mod) || len(r2.List()) != 1 {
		t.Fatalf("reopened: %q, %v", b, r2.List())
	}
	if _, err := r2.Open(strings.Repeat("0", 64)); err != ErrNotFound {
		t.Fatalf("missing module: %v", err)
	}
}

// TestCollect runs the garbage collection against a clock the test moves:
// only a module without references whose grace period has passed goes.
func TestCollect(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	put := func(b string) string {
		m, err := r.Put(strings.NewReader("\x00asm\x01\x00\x00\x00" + b))
		if err != nil {
			t.Fatal(err)
		}
		return m.SHA256
	}
	used, old, fresh := put("used"), put("old"), put("fresh")
	grace := 10 * time.Minute

	// Just uploaded: nothing goes, whatever names it.
	if gone, err := r.Collect(map[string]int{used: 2}, grace); err != nil || len(gone) != 0 {
		t.Fatalf("within the grace period: removed %v, %v", gone, err)
	}
	// A sidecar started downloading "old" (a download restarts the grace
	// period) and is still reading as the grace period ends.
	f, err := r.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now = now.Add(grace)
	r.has[fresh].seen = now.Add(-time.Minute) // re-uploaded a minute ago
	gone, err := r.Collect(map[string]int{used: 2}, grace)
	if err != nil || len(gone) != 1 || gone[0].SHA256 != old {
		t.Fatalf("removed %v, %v; want only %s", gone, err, old)
	}
	if r.Has(old) || !r.Has(used) || !r.Has(fresh) {
		t.Fatalf("after collection: old %v used %v fresh %v", r.Has(old), r.Has(used), r.Has(fresh))
	}
	if _, err := os.Stat(filepath.Join(dir, old+".wasm")); !os.IsNotExist(err) {
		t.Fatalf("the collected module's file is still there: %v", err)
	}
	if b, err := io.ReadAll(f); err != nil || !bytes.HasSuffix(b, []byte("old")) {
		t.Fatalf("a download in progress broke: %q %v", b, err)
	}
	if _, err := r.Open(old); err != ErrNotFound {
		t.Fatalf("a collected module opened: %v", err)
	}
	for _, m := range r.List() {
		if m.SHA256 == used && (m.Refs != 2 || !m.UnusedSince.Equal(now)) {
			t.Fatalf("list: %+v, want 2 refs, seen now", m)
		}
	}

	// Unreferenced, the used module goes a grace period later, not before;
	// a lookup (validation of a change naming it) restarts its period.
	now = now.Add(grace - time.Second)
	r.Has(used)
	now = now.Add(grace - time.Second)
	if gone, _ := r.Collect(nil, grace); len(gone) != 1 || gone[0].SHA256 != fresh {
		t.Fatalf("removed %v, want only %s", gone, fresh)
	}
	now = now.Add(time.Second)
	if gone, _ := r.Collect(nil, grace); len(gone) != 1 || gone[0].SHA256 != used || len(r.List()) != 0 {
		t.Fatalf("removed %v, left %v", gone, r.List())
	}

	// A restarted registry gives what it finds a whole grace period.
	kept := put("kept")
	r2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if gone, _ := r2.Collect(nil, grace); len(gone) != 0 || !r2.Has(kept) {
		t.Fatalf("reopened: removed %v", gone)
	}
}
