// Package filewatch tells its owner when the files it tracks change: a
// sidecar's config file and the Wasm modules it names, a control plane's
// resource directory. It watches directories (a file watched by itself is
// lost when an editor renames a new copy over it, or when Kubernetes swaps
// a ConfigMap's ..data link), but reacts only to events on the tracked
// files, on the symlinks that lead to them, and on names a Match function
// accepts: an access log or any other busy neighbour in the same directory
// neither delays nor triggers a reload. Events are debounced, with a cap
// on how long a stream of relevant events can hold a reload back.
// It must not read, parse or apply what it watches.
package filewatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// DefaultDebounce is how long tracked files must be quiet before a change
// is reported.
const DefaultDebounce = 200 * time.Millisecond

// maxWaitFactor bounds, in debounces, how long relevant events arriving
// without pause can hold a change back (1 s at the default debounce).
const maxWaitFactor = 5

// maxLinks bounds a symlink chain, as the kernel does (ELOOP).
const maxLinks = 40

// Options configure a Watcher.
type Options struct {
	// Debounce is how long tracked files must be quiet before Run reports a
	// change (default DefaultDebounce).
	Debounce time.Duration
	// Match, when set, makes any event whose cleaned path it accepts
	// relevant, as well as those on tracked files (a directory source's
	// "*.yaml in this directory": new files count too).
	Match func(path string) bool
	// Logger receives watch errors (default: none).
	Logger *zap.Logger
}

// Watcher reports changes to a set of files. Track and Run must be called
// from one goroutine (Run's callback may call Track).
type Watcher struct {
	o     Options
	fs    *fsnotify.Watcher
	dirs  map[string]bool // directories being watched
	files map[string]bool // relevant paths: tracked files, links on their way, their real paths
}

// New starts an fsnotify watcher with nothing tracked yet.
func New(o Options) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &Watcher{o: o, fs: fs, dirs: map[string]bool{}, files: map[string]bool{}}, nil
}

// Track replaces the set of tracked files with paths and the symlinks that
// lead to them, and watches their directories (plus extra directories,
// such as a directory source's own). A path that does not exist yet is
// tracked by name: its creation is a change. The first directory that
// cannot be watched is returned as an error; the rest are still tracked.
func (w *Watcher) Track(paths []string, extraDirs ...string) error {
	files := map[string]bool{}
	for _, p := range paths {
		for _, q := range linkChain(p) {
			files[q] = true
		}
	}
	dirs := map[string]bool{}
	for _, d := range extraDirs {
		if a, err := filepath.Abs(d); err == nil {
			dirs[a] = true
		}
	}
	for f := range files {
		dirs[filepath.Dir(f)] = true
	}
	var first error
	for d := range dirs {
		if w.dirs[d] {
			continue
		}
		if err := w.fs.Add(d); err != nil {
			if first == nil && !errors.Is(err, os.ErrNotExist) {
				first = err
			}
			delete(dirs, d)
		}
	}
	for d := range w.dirs {
		if !dirs[d] {
			_ = w.fs.Remove(d) // gone already (a swapped ConfigMap dir) is fine
		}
	}
	w.dirs, w.files = dirs, files
	return first
}

// Tracked reports whether an event on path would count as a change.
func (w *Watcher) Tracked(path string) bool {
	path = filepath.Clean(path)
	return w.files[path] || (w.o.Match != nil && w.o.Match(path))
}

// Run calls changed, on Run's goroutine, once tracked files have been
// quiet for the debounce after a change (or at most maxWaitFactor
// debounces after the first of a stream of changes), until ctx ends. An
// event queue overflow counts as a change: one of ours may be among the
// events lost. Run closes the watcher when it returns.
func (w *Watcher) Run(ctx context.Context, changed func()) {
	defer w.fs.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	db := debounce{d: w.o.Debounce}
	poke := func() {
		if db.event(time.Now()) {
			timer.Stop()
			timer.Reset(w.o.Debounce)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if ev.Op != fsnotify.Chmod && w.Tracked(ev.Name) {
				poke()
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				poke()
				continue
			}
			w.o.Logger.Warn("file watch", zap.Error(err))
		case <-timer.C:
			db.fired()
			changed()
		}
	}
}

// debounce decides when a relevant event (re)arms the timer.
type debounce struct {
	d       time.Duration
	pending bool
	first   time.Time // the first event since the last change reported
}

// event reports whether an event at now arms the timer for d: the first
// one does, and each later one pushes it on, but never past maxWaitFactor
// debounces after the first.
func (b *debounce) event(now time.Time) bool {
	if !b.pending {
		b.pending, b.first = true, now
		return true
	}
	return now.Add(b.d).Sub(b.first) <= maxWaitFactor*b.d
}

// fired records that the timer went off (the change is being reported).
func (b *debounce) fired() { b.pending = false }

// linkChain is path (absolute, cleaned) with every symlink met on the way
// to the file it names, the link targets, and the real path: an event on
// any of them can change what path reads. A ConfigMap's
// dir/weft.yaml -> ..data/weft.yaml, ..data -> ..2026_1 gives dir/weft.yaml,
// dir/..data/weft.yaml, dir/..data and dir/..2026_1/weft.yaml.
func linkChain(path string) []string {
	p, err := filepath.Abs(path)
	if err != nil {
		return []string{filepath.Clean(path)}
	}
	out := []string{p}
	for range maxLinks {
		// A link among the directories on the way (..data).
		for a := filepath.Dir(p); a != filepath.Dir(a); a = filepath.Dir(a) {
			if fi, err := os.Lstat(a); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				out = append(out, a)
			}
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		t, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		p = filepath.Clean(t)
		out = append(out, p)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if a, err := filepath.Abs(real); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// Close stops the watcher of a Watcher whose Run was never started.
func (w *Watcher) Close() error { return w.fs.Close() }
