package filesource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/store"
)

// DefaultDebounce is how long the directory must be quiet before a sync.
const DefaultDebounce = 200 * time.Millisecond

// Options configure a Source.
type Options struct {
	Dir      string
	Store    *store.Store
	Debounce time.Duration
	Logger   *zap.Logger
	// Prepare, when set, sees the resources read before they are applied
	// (the server pulls OCI modules there); an error refuses the sync.
	Prepare func([]*mesh.Resource) error
}

// Status is the file source's last sync, for /v1/status.
type Status struct {
	Dir       string    `json:"dir"`
	LastSync  time.Time `json:"last_sync,omitempty"`
	Revision  int64     `json:"revision"`
	LastError string    `json:"last_error,omitempty"`
	Files     int       `json:"files"`
}

// Source syncs a directory into the store.
type Source struct {
	o      Options
	log    *zap.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	status   Status
	lastGood string // digest of the last directory content applied
}

// Start syncs the directory once, then watches it until ctx ends or Close.
// A directory that does not exist is an error; invalid content is not (it
// is reported in Status and the log, and the store keeps what it had).
func Start(ctx context.Context, o Options) (*Source, error) {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if fi, err := os.Stat(o.Dir); err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("file source: %s is not a directory", o.Dir)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	if err := w.Add(o.Dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("file source: watching %s: %w", o.Dir, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Source{o: o, log: o.Logger.With(zap.String("dir", o.Dir)), cancel: cancel, done: make(chan struct{})}
	s.status.Dir = o.Dir
	if err := s.Sync(); err != nil {
		s.log.Error("file source: directory refused; the config in force stays", zap.Error(err))
	}
	go s.watch(ctx, w)
	return s, nil
}

// Close stops watching and waits for the watcher to end.
func (s *Source) Close() {
	s.cancel()
	<-s.done
}

// Status reports the last sync.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Source) watch(ctx context.Context, w *fsnotify.Watcher) {
	defer close(s.done)
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			timer.Reset(s.o.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.log.Warn("file source: watch error", zap.Error(err))
		case <-timer.C:
			if err := s.Sync(); err != nil {
				s.log.Error("file source: change refused; the config in force stays", zap.Error(err))
			}
		}
	}
}

// Sync reads every *.yaml, *.yml and *.json file of the directory (hidden
// names, such as a ConfigMap's ..data, are skipped; symlinks are followed)
// and replaces the file source's resources with them in one store change.
// An unchanged directory is not re-applied.
func (s *Source) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, digest, files, err := readDir(s.o.Dir)
	if err == nil && digest == s.lastGood {
		return nil
	}
	if err == nil && s.o.Prepare != nil {
		err = s.o.Prepare(rs)
	}
	if err == nil {
		var res store.Result
		res, err = s.o.Store.Apply(store.Change{Who: "file", Source: store.SourceFile, Action: "sync", Puts: rs, ReplaceSource: true})
		if err == nil {
			s.lastGood = digest
			s.status.Revision = res.Revision
			s.status.Files = files
			s.status.LastSync = time.Now().UTC()
			s.status.LastError = ""
			s.log.Info("file source synced", zap.Int("files", files), zap.Int64("revision", res.Revision), zap.Int("changed", len(res.Changed)))
			return nil
		}
	}
	s.status.LastError = err.Error()
	return err
}

func readDir(dir string) ([]*mesh.Resource, string, int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", 0, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(n)) {
		case ".yaml", ".yml", ".json":
			names = append(names, n)
		}
	}
	sort.Strings(names)
	h := sha256.New()
	var out []*mesh.Resource
	var errs []error
	files := 0
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := os.Stat(p) // follows symlinks
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // a dangling link mid-swap; the next event re-reads
			}
			errs = append(errs, err)
			continue
		}
		if fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files++
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
		rs, err := mesh.Decode(p, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rs...)
	}
	if len(errs) > 0 {
		return nil, "", files, errors.Join(errs...)
	}
	return out, hex.EncodeToString(h.Sum(nil)), files, nil
}
