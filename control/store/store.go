package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

// Sources of a change. A resource belongs to the source that wrote it; the
// other source cannot replace or delete it.
const (
	SourceAPI  = "api"
	SourceFile = "file"
)

// stateFile holds the store (resources, revision, node versions) in the
// data directory, so a restarted control plane serves what it served.
const stateFile = "state.json"

// CompileFunc validates a whole mesh and compiles every sidecar's config.
type CompileFunc func(*mesh.Mesh) (map[string]*mesh.NodeConfig, error)

// Options configure a Store.
type Options struct {
	// Dir keeps the state file; "" keeps the store in memory only.
	Dir string
	// Compile is required: no change is accepted unless it compiles.
	Compile CompileFunc
	// Audit records every accepted and refused change (nil: none).
	Audit *Audit
	// FileSource says a file source runs (weft control -dir): resources it
	// owns can then be changed only through their files. Without one, the
	// resources a file source wrote earlier are orphans, and the API may
	// replace or delete them (a replace makes the API their owner).
	FileSource bool
	Logger     *zap.Logger
}

// Object is a stored resource and the source that owns it. The Resource
// must not be modified.
type Object struct {
	Resource *mesh.Resource
	Source   string
	// File is the file a file-source resource was read from.
	File string
	// Orphaned is set on a file-source resource when no file source runs:
	// the API may take it over.
	Orphaned bool
}

// Owner describes who owns the resource: "api", "file:PATH", or
// "file:PATH (orphaned: no file source runs; the API may take it over)".
func (o Object) Owner() string {
	if o.Source != SourceFile {
		return o.Source
	}
	s := SourceFile
	if o.File != "" {
		s += ":" + o.File
	}
	if o.Orphaned {
		s += " (orphaned: no file source runs; the API may take it over)"
	}
	return s
}

// Snapshot is one sidecar's compiled config at a version. Version is the
// store revision at which this node's config last changed, so a change that
// does not touch a node leaves its version alone.
type Snapshot struct {
	Node    string
	Service string
	Version string
	// YAML is the config as sent to the sidecar (with Version).
	YAML   []byte
	Config *config.Config

	contentSum string
}

// ConflictError is a write refused by a precondition (HTTP 409): a stale
// resource_version, a create of an existing resource, or a resource owned
// by the other source.
type ConflictError struct {
	Key    mesh.Key
	Reason string
}

// Error says which resource conflicts and why.
func (e *ConflictError) Error() string { return fmt.Sprintf("%s: conflict: %s", e.Key, e.Reason) }

// NotFoundError is a delete or precondition on a resource that does not
// exist (HTTP 404).
type NotFoundError struct{ Key mesh.Key }

// Error names the missing resource.
func (e *NotFoundError) Error() string { return fmt.Sprintf("%s: not found", e.Key) }

// Delete removes one resource; a non-zero ResourceVersion is a precondition.
type Delete struct {
	Key             mesh.Key
	ResourceVersion int64
}

// Change is one atomic write: accepted whole or refused whole.
type Change struct {
	// Who made it (audit): a user from the API, "file" for the file source.
	Who string
	// Source owns the written resources: SourceAPI or SourceFile.
	Source string
	// Action names it in the audit log: create, replace, delete, apply, sync.
	Action string
	// Puts create or replace resources. A non-zero ResourceVersion must
	// match the stored one.
	Puts []*mesh.Resource
	// CreateOnly refuses a put whose resource exists.
	CreateOnly bool
	Deletes    []Delete
	// ReplaceSource deletes every resource of Source that Puts does not
	// name (a whole directory re-read).
	ReplaceSource bool
}

// Result is what an accepted change did.
type Result struct {
	// Revision is the store revision after the change (unchanged if the
	// change changed nothing).
	Revision int64
	// Changed lists the resources written or deleted.
	Changed []mesh.Key
}

// Store is the versioned set of mesh resources and the per-node snapshots
// compiled from it. Reads are lock-free on an immutable state.
type Store struct {
	o   Options
	log *zap.Logger

	mu  sync.Mutex // serialises writers
	cur *state
	rd  sync.RWMutex // guards cur for readers
}

type state struct {
	rev     int64
	objs    map[mesh.Key]Object
	mesh    *mesh.Mesh
	nodes   map[string]*Snapshot
	changed chan struct{} // closed when a newer state replaces this one
}

// Open makes a store, loading Dir/state.json when it exists.
func Open(o Options) (*Store, error) {
	if o.Compile == nil {
		return nil, errors.New("store: Options.Compile is required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Store{o: o, log: o.Logger}
	s.cur = &state{objs: map[mesh.Key]Object{}, mesh: mesh.New(nil), nodes: map[string]*Snapshot{}, changed: make(chan struct{})}
	if o.Dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", filepath.Join(o.Dir, stateFile), err)
	}
	return s, nil
}

func (s *Store) state() *state {
	s.rd.RLock()
	defer s.rd.RUnlock()
	return s.cur
}

// Revision is the current store revision (0 for an empty store).
func (s *Store) Revision() int64 { return s.state().rev }

// Changed returns a channel closed at the next accepted change.
func (s *Store) Changed() <-chan struct{} { return s.state().changed }

// Mesh is the mesh in force.
func (s *Store) Mesh() *mesh.Mesh { return s.state().mesh }

// Get returns a stored resource.
func (s *Store) Get(k mesh.Key) (Object, bool) {
	o, ok := s.state().objs[k]
	return s.view(o), ok
}

// view marks an object orphaned when its file source is gone.
func (s *Store) view(o Object) Object {
	o.Orphaned = o.Source == SourceFile && !s.o.FileSource
	return o
}

// List returns the stored resources of kind k ("" = all) in key order.
func (s *Store) List(k mesh.Kind) []Object {
	st := s.state()
	var out []Object
	for key, o := range st.objs {
		if k == "" || key.Kind == k {
			out = append(out, s.view(o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource.Key().Less(out[j].Resource.Key()) })
	return out
}

// Node returns a node's snapshot, or nil when no Sidecar has that id.
func (s *Store) Node(id string) *Snapshot { return s.state().nodes[id] }

// Nodes returns every node's snapshot by node id.
func (s *Store) Nodes() []*Snapshot {
	st := s.state()
	out := make([]*Snapshot, 0, len(st.nodes))
	for _, n := range st.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// specBytes is a resource's content for change detection.
func specBytes(r *mesh.Resource) []byte {
	b, _ := yaml.Marshal(r.Spec)
	return b
}

// Apply validates the change against the whole mesh it would make and, if
// everything compiles, commits it atomically. A refused change returns
// *ConflictError, *NotFoundError or mesh.Errors and changes nothing.
func (s *Store) Apply(c Change) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.apply(c)
	if s.o.Audit != nil && (err != nil || len(res.Changed) > 0) {
		e := AuditEntry{Who: c.Who, Source: c.Source, Action: c.Action, Revision: res.Revision, Result: "applied"}
		for _, k := range res.Changed {
			e.Resources = append(e.Resources, k.String())
		}
		if err != nil {
			e.Result, e.Error, e.Revision = "refused", err.Error(), s.cur.rev
			for _, r := range c.Puts {
				e.Resources = append(e.Resources, r.Key().String())
			}
			for _, d := range c.Deletes {
				e.Resources = append(e.Resources, d.Key.String())
			}
		}
		if aerr := s.o.Audit.Write(e); aerr != nil {
			s.log.Error("audit log write failed", zap.Error(aerr))
		}
	}
	return res, err
}

func (s *Store) apply(c Change) (Result, error) {
	cur := s.cur
	rev := cur.rev + 1
	next := make(map[mesh.Key]Object, len(cur.objs)+len(c.Puts))
	for k, o := range cur.objs {
		next[k] = o
	}
	var changed []mesh.Key
	owned := func(k mesh.Key, o Object) error {
		if o.Source == c.Source {
			return nil
		}
		if o.Source == SourceFile && c.Source == SourceAPI && !s.o.FileSource {
			return nil // an orphan: its file source is gone, the API takes it over
		}
		if o.Source == SourceFile {
			file := "its file"
			if o.File != "" {
				file = o.File
			}
			return &ConflictError{Key: k, Reason: fmt.Sprintf("owned by the file source (%s); edit %s in the watched directory, or run weft control without -dir to let the API take it over", file, file)}
		}
		return &ConflictError{Key: k, Reason: fmt.Sprintf("owned by the %s source; change it through the API (weft ctl), or delete it there first", o.Source)}
	}
	for _, d := range c.Deletes {
		o, ok := next[d.Key]
		if !ok {
			return Result{Revision: cur.rev}, &NotFoundError{Key: d.Key}
		}
		if d.ResourceVersion != 0 && d.ResourceVersion != o.Resource.ResourceVersion {
			return Result{Revision: cur.rev}, &ConflictError{Key: d.Key, Reason: fmt.Sprintf("resource_version is %d, the request expected %d; read it again", o.Resource.ResourceVersion, d.ResourceVersion)}
		}
		if err := owned(d.Key, o); err != nil {
			return Result{Revision: cur.rev}, err
		}
		delete(next, d.Key)
		changed = append(changed, d.Key)
	}
	put := map[mesh.Key]bool{}
	for _, r := range c.Puts {
		if r.Namespace == "" {
			r.Namespace = mesh.DefaultNamespace
		}
		k := r.Key()
		if put[k] {
			return Result{Revision: cur.rev}, mesh.Errors{{Key: k, Reason: "given twice in one change", File: r.File, Line: r.Line}}
		}
		put[k] = true
		o, exists := next[k]
		if exists && c.CreateOnly {
			return Result{Revision: cur.rev}, &ConflictError{Key: k, Reason: fmt.Sprintf("already exists (resource_version %d); replace it instead", o.Resource.ResourceVersion)}
		}
		if r.ResourceVersion != 0 {
			if !exists {
				return Result{Revision: cur.rev}, &ConflictError{Key: k, Reason: fmt.Sprintf("the request expected resource_version %d but the resource does not exist", r.ResourceVersion)}
			}
			if r.ResourceVersion != o.Resource.ResourceVersion {
				return Result{Revision: cur.rev}, &ConflictError{Key: k, Reason: fmt.Sprintf("resource_version is %d, the request expected %d; read it again", o.Resource.ResourceVersion, r.ResourceVersion)}
			}
		}
		if exists {
			if err := owned(k, o); err != nil {
				return Result{Revision: cur.rev}, err
			}
			sameFile := c.Source != SourceFile || o.File == r.File
			if o.Source == c.Source && sameFile && bytes.Equal(specBytes(o.Resource), specBytes(r)) {
				continue // unchanged: keep its version
			}
		}
		nr := r.Clone()
		nr.ResourceVersion = rev
		nr.Owner = "" // the store says who owns it, not the writer
		file := ""
		if c.Source == SourceFile {
			file = nr.File
		} else {
			nr.File, nr.Line = "", 0 // a request body's lines mean nothing later
		}
		next[k] = Object{Resource: nr, Source: c.Source, File: file}
		changed = append(changed, k)
	}
	if c.ReplaceSource {
		for k, o := range next {
			if o.Source == c.Source && !put[k] {
				delete(next, k)
				changed = append(changed, k)
			}
		}
	}
	if len(changed) == 0 {
		return Result{Revision: cur.rev}, nil
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i].Less(changed[j]) })
	rs := make([]*mesh.Resource, 0, len(next))
	for _, o := range next {
		rs = append(rs, o.Resource)
	}
	m := mesh.New(rs)
	compiled, err := s.o.Compile(m)
	if err != nil {
		return Result{Revision: cur.rev}, err
	}
	nodes, err := versionNodes(compiled, cur.nodes, strconv.FormatInt(rev, 10))
	if err != nil {
		return Result{Revision: cur.rev}, err
	}
	st := &state{rev: rev, objs: next, mesh: m, nodes: nodes, changed: make(chan struct{})}
	if err := s.save(st); err != nil {
		return Result{Revision: cur.rev}, fmt.Errorf("store: saving state: %w", err)
	}
	s.rd.Lock()
	s.cur = st
	s.rd.Unlock()
	close(cur.changed)
	s.log.Info("mesh changed", zap.Int64("revision", rev), zap.String("who", c.Who), zap.String("action", c.Action), zap.Int("resources", len(changed)))
	return Result{Revision: rev, Changed: changed}, nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// versionNodes gives each compiled node a version: its previous one when
// its content is unchanged, else version.
func versionNodes(compiled map[string]*mesh.NodeConfig, prev map[string]*Snapshot, version string) (map[string]*Snapshot, error) {
	out := make(map[string]*Snapshot, len(compiled))
	for id, nc := range compiled {
		cs := sum(nc.Content)
		if p := prev[id]; p != nil && p.contentSum == cs {
			out[id] = p
			continue
		}
		y, err := mesh.Render(nc.Config, version)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", id, err)
		}
		out[id] = &Snapshot{Node: id, Service: nc.Service, Version: version, YAML: y, Config: nc.Config, contentSum: cs}
	}
	return out, nil
}

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

func (s *Store) save(st *state) error {
	if s.o.Dir == "" {
		return nil
	}
	p := persisted{Revision: st.rev, Nodes: map[string]persistedNode{}}
	keys := make([]mesh.Key, 0, len(st.objs))
	for k := range st.objs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	for _, k := range keys {
		o := st.objs[k]
		b, err := json.Marshal(o.Resource)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		p.Objects = append(p.Objects, persistedObject{Source: o.Source, File: o.File, Resource: b})
	}
	for id, n := range st.nodes {
		p.Nodes[id] = persistedNode{Version: n.Version, ContentSHA256: n.contentSum}
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.o.Dir, stateFile), b)
}

func (s *Store) load() error {
	b, err := os.ReadFile(filepath.Join(s.o.Dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	objs := map[mesh.Key]Object{}
	var rs []*mesh.Resource
	for i, po := range p.Objects {
		dec, err := mesh.Decode(fmt.Sprintf("%s: objects[%d]", stateFile, i), po.Resource)
		if err != nil {
			return err
		}
		if len(dec) != 1 {
			return fmt.Errorf("objects[%d]: want one resource", i)
		}
		r := dec[0]
		r.File, r.Line = "", 0
		objs[r.Key()] = Object{Resource: r, Source: po.Source, File: po.File}
		rs = append(rs, r)
	}
	m := mesh.New(rs)
	compiled, err := s.o.Compile(m)
	if err != nil {
		return fmt.Errorf("the saved mesh no longer compiles: %w", err)
	}
	prev := map[string]*Snapshot{}
	for id, n := range p.Nodes {
		prev[id] = &Snapshot{Node: id, Version: n.Version, contentSum: n.ContentSHA256}
	}
	// A node whose content is unchanged keeps its saved version; its
	// snapshot still has to be rendered.
	nodes := map[string]*Snapshot{}
	for id, nc := range compiled {
		v := strconv.FormatInt(p.Revision, 10)
		if pn := prev[id]; pn != nil && pn.contentSum == sum(nc.Content) {
			v = pn.Version
		}
		one, err := versionNodes(map[string]*mesh.NodeConfig{id: nc}, nil, v)
		if err != nil {
			return err
		}
		nodes[id] = one[id]
	}
	s.cur = &state{rev: p.Revision, objs: objs, mesh: m, nodes: nodes, changed: make(chan struct{})}
	s.log.Info("store loaded", zap.Int64("revision", p.Revision), zap.Int("resources", len(objs)), zap.Int("nodes", len(nodes)))
	return nil
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
