package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

// Sources of a change. A resource belongs to the source that wrote it; the
// other sources cannot replace or delete it.
const (
	SourceAPI  = "api"
	SourceFile = "file"
	// SourceKube is a Kubernetes cluster (control/kube): resources
	// translated from Services, EndpointSlices, routes and weft's CRDs.
	SourceKube = "kube"
)

// CompileFunc validates a whole mesh and compiles every sidecar's config.
type CompileFunc func(*mesh.Mesh) (map[string]*mesh.NodeConfig, error)

// Options configure a Store.
type Options struct {
	// Backend keeps the records (an EtcdBackend shared by replicas); nil:
	// a FileBackend on Dir.
	Backend Backend
	// Dir keeps the state file when Backend is nil; "" keeps the store in
	// memory only.
	Dir string
	// WriteTimeout bounds one Apply, retries on a busy shared backend
	// included (default 15s).
	WriteTimeout time.Duration
	// Compile is required: no change is accepted unless it compiles.
	Compile CompileFunc
	// Audit records every accepted and refused change (nil: none).
	Audit *Audit
	// FileSource says a file source runs (weft control -dir): resources it
	// owns can then be changed only through their files. Without one, the
	// resources a file source wrote earlier are orphans, and the API may
	// replace or delete them (a replace makes the API their owner).
	FileSource bool
	// KubeSource says a Kubernetes source runs (weft control -kubeconfig):
	// resources it owns can then be changed only in the cluster. Without
	// one, they are orphans the API may replace or delete, as file ones.
	KubeSource bool
	Logger     *zap.Logger
}

// Object is a stored resource and the source that owns it. The Resource
// must not be modified.
type Object struct {
	Resource *mesh.Resource
	Source   string
	// File is the file a file-source resource was read from, or the
	// Kubernetes object a kube-source resource was translated from
	// ("Service default/web").
	File string
	// Orphaned is set on a file- or kube-source resource when its source
	// does not run: the API may take it over.
	Orphaned bool
}

// Owner describes who owns the resource: "api", "file:PATH",
// "kube:Service NS/NAME", or either of the last two followed by
// " (orphaned: no file source runs; the API may take it over)".
func (o Object) Owner() string {
	if o.Source != SourceFile && o.Source != SourceKube {
		return o.Source
	}
	s := o.Source
	if o.File != "" {
		s += ":" + o.File
	}
	if o.Orphaned {
		s += " (orphaned: no " + o.Source + " source runs; the API may take it over)"
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
	// Body is the config as sent to the sidecar, with Version: JSON
	// (config.ParseJSON), which YAML readers (config.Parse) read the same.
	Body   []byte
	Config *config.Config

	contentSum string

	encOnce sync.Once
	enc     []byte
}

// Encoded returns encode(s), computed once per snapshot: the watch answer
// every sidecar polling this version gets, encoded once for all of them.
func (s *Snapshot) Encoded(encode func(*Snapshot) []byte) []byte {
	s.encOnce.Do(func() { s.enc = encode(s) })
	return s.enc
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
	// Source owns the written resources: SourceAPI, SourceFile or
	// SourceKube. A file or kube put's Resource.File names its origin.
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
// compiled from it. Readers take a read lock only to load the current
// immutable state; everything they read from it is never modified.
type Store struct {
	o   Options
	log *zap.Logger
	b   Backend

	mu  sync.Mutex // serialises this process's writers
	cur *state
	rd  sync.RWMutex // guards cur; held to swap it, never while compiling

	cancel context.CancelFunc
	done   chan struct{}

	followMu  sync.Mutex
	followErr *BackendStatus // the last revision that did not compile here
	stuck     *Records       // its records, for Retry
}

// BackendStatus says where the store is kept and whether this process
// serves the latest revision committed there.
type BackendStatus struct {
	// Backend is "file" or "etcd".
	Backend string `json:"backend"`
	// StuckAt is a revision committed by another replica that does not
	// compile here (Error says why): this replica serves an older one.
	StuckAt int64  `json:"stuck_at,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Status reports the backend and whether this replica is behind it.
func (s *Store) Status() BackendStatus {
	st := BackendStatus{Backend: "file"}
	if _, ok := s.b.(*EtcdBackend); ok {
		st.Backend = "etcd"
	}
	s.followMu.Lock()
	defer s.followMu.Unlock()
	if e := s.followErr; e != nil && e.StuckAt > s.Revision() {
		st.StuckAt, st.Error = e.StuckAt, e.Error
	}
	return st
}

type state struct {
	rev     int64
	objs    map[mesh.Key]Object
	mesh    *mesh.Mesh
	nodes   map[string]*Snapshot
	changed chan struct{} // closed when a newer state replaces this one
}

// Open makes a store on its backend, loads the committed records and, for
// a shared backend, follows the commits of other writers until Close.
func Open(o Options) (*Store, error) {
	if o.Compile == nil {
		return nil, errors.New("store: Options.Compile is required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 15 * time.Second
	}
	b := o.Backend
	if b == nil {
		fb, err := NewFileBackend(o.Dir)
		if err != nil {
			return nil, err
		}
		b = fb
	}
	s := &Store{o: o, log: o.Logger, b: b, done: make(chan struct{})}
	s.cur = &state{objs: map[mesh.Key]Object{}, mesh: mesh.New(nil), nodes: map[string]*Snapshot{}, changed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), o.WriteTimeout)
	recs, err := b.Load(ctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("store: loading: %w", err)
	}
	st, err := s.build(recs, s.cur)
	if err != nil {
		return nil, fmt.Errorf("store: the saved mesh (revision %d) no longer compiles: %w", recs.Revision, err)
	}
	s.cur = st
	s.log.Info("store loaded", zap.Int64("revision", st.rev), zap.Int("resources", len(st.objs)), zap.Int("nodes", len(st.nodes)))
	var wctx context.Context
	wctx, s.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		b.Watch(wctx, s.followWatch)
	}()
	return s, nil
}

// Close stops following the backend and closes it.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	return s.b.Close()
}

// followWatch installs records the backend's watch reports. It waits for
// this process's write in flight, if any: the watch reports that write's
// own commit too, which the writer installs itself (compiling the mesh
// again here would only take the cores the writer needs).
func (s *Store) followWatch(r *Records) {
	if r.Revision <= s.state().rev {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.follow(r)
}

// follow installs records another writer committed (s.mu held).
func (s *Store) follow(r *Records) {
	cur := s.state()
	if r.Revision <= cur.rev {
		return
	}
	began := time.Now()
	st, err := s.build(r, cur)
	if err != nil {
		// Another replica validated this mesh; failing here means the
		// replicas run different versions. Keep serving the last good one.
		s.log.Error("a committed revision does not compile here; keeping the previous one (are all replicas the same weft version, with the same modules?)",
			zap.Int64("revision", r.Revision), zap.Error(err))
		s.followMu.Lock()
		s.followErr = &BackendStatus{StuckAt: r.Revision, Error: err.Error()}
		s.stuck = r
		s.followMu.Unlock()
		return
	}
	if s.install(st) {
		s.log.Info("mesh changed", zap.Int64("revision", st.rev), zap.String("by", "another replica"), zap.Duration("build", time.Since(began)))
	}
}

// Retry compiles again the latest revision committed elsewhere that did
// not compile here, if this replica is still behind it: call it when what
// it lacked may have come (a module blob put back in the shared store),
// rather than waiting for the next commit.
func (s *Store) Retry() {
	s.followMu.Lock()
	r := s.stuck
	s.followMu.Unlock()
	if r == nil || r.Revision <= s.Revision() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.follow(r)
}

// WaitWrites returns once every change this process was validating or
// committing when it was called is installed or refused (and any commit
// of another writer it was compiling is installed).
func (s *Store) WaitWrites() {
	s.mu.Lock()
	//lint:ignore SA2001 an empty critical section: waiting for the writers is the point
	s.mu.Unlock()
}

// install makes st current unless a newer state already is.
func (s *Store) install(st *state) bool {
	s.rd.Lock()
	old := s.cur
	if st.rev <= old.rev {
		s.rd.Unlock()
		return false
	}
	s.cur = st
	s.rd.Unlock()
	close(old.changed)
	return true
}

// build compiles the records into a state, reusing prev's snapshots of
// nodes whose version and content are unchanged.
func (s *Store) build(r *Records, prev *state) (*state, error) {
	rs := make([]*mesh.Resource, 0, len(r.Objects))
	for _, o := range r.Objects {
		rs = append(rs, o.Resource)
	}
	m := mesh.New(rs)
	compiled, err := s.o.Compile(m)
	if err != nil {
		return nil, err
	}
	nodes := make(map[string]*Snapshot, len(compiled))
	for id, nc := range compiled {
		cs := sum(nc.Content)
		v := strconv.FormatInt(r.Revision, 10)
		if nr, ok := r.Nodes[id]; ok && nr.Sum == cs {
			v = nr.Version
		} else if ok {
			s.log.Warn("a node's stored content differs from this replica's compilation (are all replicas the same weft version?)", zap.String("node", id))
		}
		if p := prev.nodes[id]; p != nil && p.Version == v && p.contentSum == cs {
			nodes[id] = p
			continue
		}
		nodes[id] = newSnapshot(nc, v, cs)
	}
	return &state{rev: r.Revision, objs: r.Objects, mesh: m, nodes: nodes, changed: make(chan struct{})}, nil
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

// Latest is the latest revision committed to the backend, read from the
// backend itself (on etcd, a quorum read): a replica that has installed it
// (WaitRevision) holds the same state as every other.
func (s *Store) Latest(ctx context.Context) (int64, error) { return s.b.Revision(ctx) }

// WaitRevision waits until the store is at revision rev or later.
func (s *Store) WaitRevision(ctx context.Context, rev int64) error {
	for {
		st := s.state()
		if st.rev >= rev {
			return nil
		}
		select {
		case <-st.changed:
		case <-ctx.Done():
			return fmt.Errorf("store: waiting for revision %d (at %d): %w", rev, st.rev, ctx.Err())
		}
	}
}

// Mesh is the mesh in force.
func (s *Store) Mesh() *mesh.Mesh { return s.state().mesh }

// Get returns a stored resource.
func (s *Store) Get(k mesh.Key) (Object, bool) {
	o, ok := s.state().objs[k]
	return s.view(o), ok
}

// view marks an object orphaned when its file or kube source is gone.
func (s *Store) view(o Object) Object {
	o.Orphaned = s.orphaned(o)
	return o
}

func (s *Store) orphaned(o Object) bool {
	return o.Source == SourceFile && !s.o.FileSource || o.Source == SourceKube && !s.o.KubeSource
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
// *ConflictError, *NotFoundError, mesh.Errors or *TooBigError and changes
// nothing; a backend that cannot commit (etcd without a quorum) returns
// *UnavailableError.
//
// On a shared backend a change is planned on this replica's view and
// committed only if no other replica committed since (compare-and-swap on
// the revision); otherwise the view is refreshed and the change planned
// again, so concurrent writers never lose each other's updates and
// preconditions are checked against the latest state.
func (s *Store) Apply(c Change) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.WriteTimeout)
	defer cancel()
	res, audited, err := s.applyRetrying(ctx, c)
	if s.o.Audit != nil && (err != nil || len(res.Changed) > 0) {
		e := AuditEntry{Who: c.Who, Source: c.Source, Action: c.Action, Revision: res.Revision, Result: "applied"}
		for _, k := range res.Changed {
			e.Resources = append(e.Resources, k.String())
		}
		if err == nil && !audited.IsZero() {
			// The shared log has it, committed with the change: only
			// this replica's file is left.
			e.Time = audited
			if aerr := s.o.Audit.writeFile(e); aerr != nil {
				s.log.Error("audit log write failed", zap.Error(aerr))
			}
			return res, nil
		}
		if err != nil {
			e.Result, e.Error, e.Revision = "refused", err.Error(), s.Revision()
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

// UnavailableError is a change that could not be committed because the
// backend is unreachable or has no quorum (HTTP 503).
type UnavailableError struct {
	Err error
	// Unconfirmed is set when the commit was sent but not answered: etcd
	// may still apply it once it has a quorum again. Retrying is safe (a
	// change already applied is then a no-op).
	Unconfirmed bool
}

// Error says the store could not commit, why, and whether anything may
// have changed.
func (e *UnavailableError) Error() string {
	if e.Unconfirmed {
		return fmt.Sprintf("store unavailable, the change is not confirmed (it may still apply when the store recovers; retrying is safe): %v", e.Err)
	}
	return fmt.Sprintf("store unavailable, nothing changed: %v", e.Err)
}

// Unwrap returns the backend's error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// applyRetrying commits c. On a backend that keeps a shared audit log it
// commits the change's audit entry in the same transaction and returns
// the entry's time (zero otherwise).
func (s *Store) applyRetrying(ctx context.Context, c Change) (Result, time.Time, error) {
	for attempt := 1; ; attempt++ {
		cur := s.state()
		p, err := s.plan(cur, c)
		if err != nil || len(p.changed) == 0 {
			// A refusal or a no-op is only true of the latest state: this
			// replica may not have seen another's last commit yet.
			latest, rerr := s.b.Revision(ctx)
			if rerr != nil {
				return Result{Revision: cur.rev}, time.Time{}, &UnavailableError{Err: rerr}
			}
			if latest == cur.rev {
				return Result{Revision: cur.rev}, time.Time{}, err
			}
		}
		var rev int64
		var audited time.Time
		var committing time.Duration
		if err == nil && len(p.changed) > 0 {
			// (Unless it would take the transaction's last free op.)
			if eb, etcd := s.b.(*EtcdBackend); etcd && s.o.Audit != nil && len(p.write.Puts)+len(p.write.Deletes)+2 <= eb.maxOps {
				// The entry is committed with the change: no change
				// without its entry, and no second etcd round trip.
				audited = time.Now().UTC()
				e := AuditEntry{Time: audited, Who: c.Who, Source: c.Source, Action: c.Action, Result: "applied"}
				for _, k := range p.changed {
					e.Resources = append(e.Resources, k.String())
				}
				if p.write.Audit, err = s.o.Audit.sharedOp(ctx, e); err != nil || p.write.Audit == nil {
					audited, p.write.Audit, err = time.Time{}, nil, nil // the entry goes the usual way
				}
			}
			began := time.Now()
			rev, err = s.b.Commit(ctx, cur.rev, p.write)
			committing = time.Since(began)
		} else {
			err = ErrStale
		}
		if errors.Is(err, ErrStale) {
			// Another replica committed first: catch up and plan again.
			recs, lerr := s.b.Load(ctx)
			if lerr != nil {
				return Result{Revision: cur.rev}, time.Time{}, &UnavailableError{Err: fmt.Errorf("reading the store after a concurrent change: %w", lerr)}
			}
			s.follow(recs)
			if s.state().rev <= cur.rev {
				// The latest revision does not compile here: planning on
				// the old one again would only fail again.
				st := s.Status()
				return Result{Revision: cur.rev}, time.Time{}, &UnavailableError{Err: fmt.Errorf("this replica cannot load revision %d, committed elsewhere: %s", st.StuckAt, st.Error)}
			}
			if err := ctx.Err(); err != nil {
				return Result{Revision: cur.rev}, time.Time{}, &UnavailableError{Err: fmt.Errorf("after %d attempts: %w", attempt, err)}
			}
			continue
		}
		var tooBig *TooBigError
		if errors.As(err, &tooBig) {
			return Result{Revision: cur.rev}, time.Time{}, err
		}
		if err != nil {
			return Result{Revision: cur.rev}, time.Time{}, &UnavailableError{Err: err, Unconfirmed: true}
		}
		st, err := s.stamp(cur, p, rev)
		if err != nil {
			return Result{Revision: cur.rev}, time.Time{}, err
		}
		s.install(st)
		s.log.Info("mesh changed", zap.Int64("revision", rev), zap.String("who", c.Who), zap.String("action", c.Action), zap.Int("resources", len(p.changed)),
			zap.Duration("commit", committing))
		return Result{Revision: rev, Changed: p.changed}, audited, nil
	}
}

// plan is a change checked and compiled against one state, not yet
// committed.
type plan struct {
	changed  []mesh.Key
	next     map[mesh.Key]Object // written resources carry ResourceVersion 0
	mesh     *mesh.Mesh
	compiled map[string]*mesh.NodeConfig
	sums     map[string]string
	write    Write
}

func (s *Store) plan(cur *state, c Change) (*plan, error) {
	next := make(map[mesh.Key]Object, len(cur.objs)+len(c.Puts))
	for k, o := range cur.objs {
		next[k] = o
	}
	p := &plan{}
	owned := func(k mesh.Key, o Object) error {
		if o.Source == c.Source {
			return nil
		}
		if c.Source == SourceAPI && s.orphaned(o) {
			return nil // an orphan: its source is gone, the API takes it over
		}
		if o.Source == SourceKube {
			return &ConflictError{Key: k, Reason: fmt.Sprintf("owned by the kube source (translated from %s); change that object in the Kubernetes cluster, or run weft control without -kubeconfig to let the API take it over", o.File)}
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
			return nil, &NotFoundError{Key: d.Key}
		}
		if d.ResourceVersion != 0 && d.ResourceVersion != o.Resource.ResourceVersion {
			return nil, &ConflictError{Key: d.Key, Reason: fmt.Sprintf("resource_version is %d, the request expected %d; read it again", o.Resource.ResourceVersion, d.ResourceVersion)}
		}
		if err := owned(d.Key, o); err != nil {
			return nil, err
		}
		delete(next, d.Key)
		p.changed = append(p.changed, d.Key)
		p.write.Deletes = append(p.write.Deletes, d.Key)
	}
	put := map[mesh.Key]bool{}
	for _, r := range c.Puts {
		if r.Namespace == "" {
			r.Namespace = mesh.DefaultNamespace
		}
		k := r.Key()
		if put[k] {
			return nil, mesh.Errors{{Key: k, Reason: "given twice in one change", File: r.File, Line: r.Line}}
		}
		put[k] = true
		o, exists := next[k]
		if exists && c.CreateOnly {
			return nil, &ConflictError{Key: k, Reason: fmt.Sprintf("already exists (resource_version %d); replace it instead", o.Resource.ResourceVersion)}
		}
		if r.ResourceVersion != 0 {
			if !exists {
				return nil, &ConflictError{Key: k, Reason: fmt.Sprintf("the request expected resource_version %d but the resource does not exist", r.ResourceVersion)}
			}
			if r.ResourceVersion != o.Resource.ResourceVersion {
				return nil, &ConflictError{Key: k, Reason: fmt.Sprintf("resource_version is %d, the request expected %d; read it again", o.Resource.ResourceVersion, r.ResourceVersion)}
			}
		}
		if exists {
			if err := owned(k, o); err != nil {
				return nil, err
			}
			sameFile := c.Source == SourceAPI || o.File == r.File
			if o.Source == c.Source && sameFile && bytes.Equal(specBytes(o.Resource), specBytes(r)) {
				continue // unchanged: keep its version
			}
		}
		nr := r.Clone()
		nr.ResourceVersion = 0 // the commit's revision, once known
		nr.Owner = ""          // the store says who owns it, not the writer
		file := ""
		if c.Source == SourceFile || c.Source == SourceKube {
			file = nr.File
		}
		if c.Source == SourceAPI {
			nr.File, nr.Line = "", 0 // a request body's lines mean nothing later
		}
		next[k] = Object{Resource: nr, Source: c.Source, File: file}
		p.changed = append(p.changed, k)
	}
	if c.ReplaceSource {
		for k, o := range next {
			if o.Source == c.Source && !put[k] {
				delete(next, k)
				p.changed = append(p.changed, k)
				p.write.Deletes = append(p.write.Deletes, k)
			}
		}
	}
	if len(p.changed) == 0 {
		return p, nil
	}
	sort.Slice(p.changed, func(i, j int) bool { return p.changed[i].Less(p.changed[j]) })
	for _, k := range p.changed {
		if o, ok := next[k]; ok {
			p.write.Puts = append(p.write.Puts, o)
		}
	}
	rs := make([]*mesh.Resource, 0, len(next))
	for _, o := range next {
		rs = append(rs, o.Resource)
	}
	p.mesh, p.next = mesh.New(rs), next
	var err error
	if p.compiled, err = s.o.Compile(p.mesh); err != nil {
		return nil, err
	}
	p.sums = make(map[string]string, len(p.compiled))
	p.write.Nodes = make(map[string]NodeRecord, len(p.compiled))
	for id, nc := range p.compiled {
		cs := sum(nc.Content)
		p.sums[id] = cs
		n := NodeRecord{Sum: cs} // changed: the commit's revision
		if old := cur.nodes[id]; old != nil && old.contentSum == cs {
			n.Version = old.Version
		}
		p.write.Nodes[id] = n
	}
	return p, nil
}

// stamp is the state a committed plan makes: written resources and changed
// nodes carry the commit's revision, the rest keep theirs.
func (s *Store) stamp(cur *state, p *plan, rev int64) (*state, error) {
	v := strconv.FormatInt(rev, 10)
	objs := p.next
	for _, k := range p.changed {
		o, ok := objs[k]
		if !ok {
			continue
		}
		r := *o.Resource
		r.ResourceVersion = rev
		o.Resource = &r
		objs[k] = o
	}
	nodes := make(map[string]*Snapshot, len(p.compiled))
	for id, nc := range p.compiled {
		if old := cur.nodes[id]; old != nil && old.contentSum == p.sums[id] {
			nodes[id] = old
			continue
		}
		nodes[id] = newSnapshot(nc, v, p.sums[id])
	}
	rs := make([]*mesh.Resource, 0, len(objs))
	for _, o := range objs {
		rs = append(rs, o.Resource)
	}
	return &state{rev: rev, objs: objs, mesh: mesh.New(rs), nodes: nodes, changed: make(chan struct{})}, nil
}

// newSnapshot versions a node's compiled config. The Config is shared with
// the compilation (nobody modifies it), with its Version set.
func newSnapshot(nc *mesh.NodeConfig, version, contentSum string) *Snapshot {
	cfg := *nc.Config
	cfg.Version = version
	return &Snapshot{Node: nc.Node, Service: nc.Service, Version: version, Body: mesh.Stamp(nc.Content, version), Config: &cfg, contentSum: contentSum}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
