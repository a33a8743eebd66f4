package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/weftmesh/weft/control/mesh"
)

// stateFile holds the store (resources, revision, node versions) in the
// data directory, so a restarted control plane serves what it served.
const stateFile = "state.json"

// FileBackend keeps the records in DIR/state.json, rewritten whole and
// atomically at each commit, or only in memory when its directory is "".
// One process owns it: it has no other writers to watch.
type FileBackend struct {
	dir string

	mu  sync.Mutex
	cur *Records
}

// NewFileBackend opens the state file in dir ("" keeps the records in
// memory only), creating dir when missing.
func NewFileBackend(dir string) (*FileBackend, error) {
	b := &FileBackend{dir: dir, cur: emptyRecords()}
	if dir == "" {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	r, err := b.read()
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", b.path(), err)
	}
	b.cur = r
	return b, nil
}

func (b *FileBackend) path() string { return filepath.Join(b.dir, stateFile) }

// Load returns the records as last committed.
func (b *FileBackend) Load(context.Context) (*Records, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, nil
}

// Commit writes the state file with w applied at revision base+1.
func (b *FileBackend) Commit(_ context.Context, base int64, w Write) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if base != b.cur.Revision {
		return 0, ErrStale
	}
	rev := base + 1
	next := &Records{Revision: rev, Objects: maps.Clone(b.cur.Objects)}
	for _, k := range w.Deletes {
		delete(next.Objects, k)
	}
	for _, o := range w.Puts {
		r := *o.Resource
		r.ResourceVersion = rev
		o.Resource = &r
		next.Objects[r.Key()] = o
	}
	next.Nodes = make(map[string]NodeRecord, len(w.Nodes))
	for id, n := range w.Nodes {
		if n.Version == "" {
			n.Version = strconv.FormatInt(rev, 10)
		}
		next.Nodes[id] = n
	}
	if err := b.write(next); err != nil {
		return 0, fmt.Errorf("store: saving state: %w", err)
	}
	b.cur = next
	return rev, nil
}

// Revision is the last committed revision.
func (b *FileBackend) Revision(context.Context) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur.Revision, nil
}

// Watch returns at once: nothing else writes the state file.
func (b *FileBackend) Watch(context.Context, func(*Records)) {}

// Close does nothing: every commit is already on disk.
func (b *FileBackend) Close() error { return nil }

// persisted is the state file's shape.
type persisted struct {
	Revision int64                    `json:"revision"`
	Objects  []persistedObject        `json:"objects"`
	Nodes    map[string]persistedNode `json:"nodes"`
}

type persistedObject struct {
	Source   string          `json:"source"`
	File     string          `json:"file,omitempty"`
	Resource json.RawMessage `json:"resource"`
}

type persistedNode struct {
	Version       string `json:"version"`
	ContentSHA256 string `json:"content_sha256"`
}

func (b *FileBackend) write(r *Records) error {
	if b.dir == "" {
		return nil
	}
	p := persisted{Revision: r.Revision, Nodes: map[string]persistedNode{}}
	keys := make([]mesh.Key, 0, len(r.Objects))
	for k := range r.Objects {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	for _, k := range keys {
		o := r.Objects[k]
		rb, err := json.Marshal(o.Resource)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		p.Objects = append(p.Objects, persistedObject{Source: o.Source, File: o.File, Resource: rb})
	}
	for id, n := range r.Nodes {
		p.Nodes[id] = persistedNode{Version: n.Version, ContentSHA256: n.Sum}
	}
	out, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(b.path(), out)
}

func (b *FileBackend) read() (*Records, error) {
	raw, err := os.ReadFile(b.path())
	if errors.Is(err, os.ErrNotExist) {
		return emptyRecords(), nil
	}
	if err != nil {
		return nil, err
	}
	var p persisted
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	r := emptyRecords()
	r.Revision = p.Revision
	for i, po := range p.Objects {
		res, err := decodeOne(fmt.Sprintf("%s: objects[%d]", stateFile, i), po.Resource)
		if err != nil {
			return nil, err
		}
		r.Objects[res.Key()] = Object{Resource: res, Source: po.Source, File: po.File}
	}
	for id, n := range p.Nodes {
		r.Nodes[id] = NodeRecord{Version: n.Version, Sum: n.ContentSHA256}
	}
	return r, nil
}

// decodeOne decodes one stored resource (JSON, which mesh.Decode reads as
// YAML).
func decodeOne(name string, b []byte) (*mesh.Resource, error) {
	dec, err := mesh.Decode(name, b)
	if err != nil {
		return nil, err
	}
	if len(dec) != 1 {
		return nil, fmt.Errorf("%s: want one resource, found %d", name, len(dec))
	}
	r := dec[0]
	r.File, r.Line = "", 0
	return r, nil
}

// writeFileAtomic writes b to a temporary file beside path and renames it
// over path, so a reader never sees half a file.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}
