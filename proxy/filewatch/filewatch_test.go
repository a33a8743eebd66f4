package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func mustWrite(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustLink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func newWatcher(t *testing.T, o Options) *Watcher {
	t.Helper()
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// What counts as an event on a ConfigMap-mounted config: the link, the
// ..data link it goes through, the real file; not its neighbours.
func TestTrackedConfigMapChain(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "..2026_1"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "..2026_1", "weft.yaml"), "a")
	mustLink(t, "..2026_1", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "weft.yaml")
	mustLink(t, "..data/weft.yaml", path)
	mods := t.TempDir()
	mod := filepath.Join(mods, "f.wasm")
	mustWrite(t, mod, "m")

	w := newWatcher(t, Options{})
	defer w.fs.Close()
	if err := w.Track([]string{path, mod}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Join(dir, "..data"), filepath.Join(dir, "..data", "weft.yaml"),
		filepath.Join(dir, "..2026_1", "weft.yaml"), mod} {
		if !w.Tracked(p) {
			t.Errorf("%s: not tracked", p)
		}
	}
	for _, p := range []string{filepath.Join(dir, "access.log"), filepath.Join(dir, "weft.yaml.tmp"),
		filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..2026_1", "other.yaml"), filepath.Join(mods, "g.wasm")} {
		if w.Tracked(p) {
			t.Errorf("%s: tracked, want ignored", p)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "..2026_1"), mods} {
		if !w.dirs[d] {
			t.Errorf("directory %s not watched (watching %v)", d, w.dirs)
		}
	}
	// After the swap, re-tracking follows the link to the new directory
	// and lets go of the old one.
	if err := os.Mkdir(filepath.Join(dir, "..2026_2"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "..2026_2", "weft.yaml"), "b")
	mustLink(t, "..2026_2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := w.Track([]string{path}); err != nil {
		t.Fatal(err)
	}
	if !w.Tracked(filepath.Join(dir, "..2026_2", "weft.yaml")) || w.Tracked(filepath.Join(dir, "..2026_1", "weft.yaml")) || w.Tracked(mod) {
		t.Errorf("after the swap: tracking %v", w.files)
	}
	if w.dirs[filepath.Join(dir, "..2026_1")] || w.dirs[mods] {
		t.Errorf("after the swap: still watching %v", w.dirs)
	}
}

// Run reports an edit of a tracked file in another directory (a module)
// while a neighbour of the config is written without pause.
func TestRunReportsTrackedEditsOnly(t *testing.T) {
	dir, mods := t.TempDir(), t.TempDir()
	cfg, mod := filepath.Join(dir, "weft.yaml"), filepath.Join(mods, "f.wasm")
	mustWrite(t, cfg, "a")
	mustWrite(t, mod, "m1")
	w := newWatcher(t, Options{Debounce: 20 * time.Millisecond})
	if err := w.Track([]string{cfg, mod}); err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, func() { changes.Add(1) }) }()
	t.Cleanup(func() { cancel(); <-done })

	stop, busy := make(chan struct{}), make(chan struct{})
	var writes atomic.Int64
	go func() {
		defer close(busy)
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mustWriteQuiet(filepath.Join(dir, "access.log"), i)
			writes.Add(1)
		}
	}()
	t.Cleanup(func() { close(stop); <-busy })
	poll(t, "the neighbour to be busy", func() bool { return writes.Load() > 100 })
	mustWrite(t, mod, "m2")
	poll(t, "the module edit to be reported", func() bool { return changes.Load() > 0 })
}

func mustWriteQuiet(path string, i int) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	_, _ = f.Write([]byte{byte('a' + i%26), '\n'})
	_ = f.Close()
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The debounce is capped: a stream of relevant events (a tracked file
// written without pause) cannot hold a change back for ever.
func TestDebounceIsCapped(t *testing.T) {
	const d = 200 * time.Millisecond
	t0 := time.Unix(1000, 0)
	b := debounce{d: d}
	if !b.event(t0) {
		t.Fatal("the first event does not arm the timer")
	}
	// Events every 10 ms push the deadline on until first+5d.
	var last time.Time
	for at := t0.Add(10 * time.Millisecond); b.event(at); at = at.Add(10 * time.Millisecond) {
		last = at
	}
	if want := t0.Add(4 * d); last.Before(want.Add(-10*time.Millisecond)) || last.After(want) {
		t.Fatalf("events pushed the deadline on until %v after the first, want %v", last.Sub(t0), want.Sub(t0))
	}
	b.fired()
	if !b.event(t0.Add(time.Hour)) {
		t.Fatal("after a change is reported, the next event does not arm the timer")
	}
}
