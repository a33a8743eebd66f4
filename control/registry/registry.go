package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxModuleBytes bounds an uploaded module (the data plane's fetch limit).
const MaxModuleBytes = 256 << 20

// wasmMagic starts every Wasm binary.
var wasmMagic = []byte{0, 'a', 's', 'm'}

// ErrNotFound is returned for a digest the registry does not hold.
var ErrNotFound = errors.New("module not found")

// Module describes one stored module.
type Module struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Refs is how many resources and snapshots named the module at the
	// last collection (Collect); 0 before the first.
	Refs int `json:"refs"`
	// UnusedSince is when the module was last uploaded, looked up (Has)
	// or named (Collect): it is collected a grace period after that.
	UnusedSince time.Time `json:"unused_since"`
}

// entry is what the registry knows of one stored module.
type entry struct {
	size int64
	refs int
	// seen is the last time the module was uploaded, looked up or
	// referenced; the grace period runs from it.
	seen time.Time
	// sharedAt is when the module was last known to be in the shared
	// store.
	sharedAt time.Time
}

// Shared keeps module blobs where every control-plane replica reads them
// (store.EtcdBlobs). Put of a module already there does nothing.
type Shared interface {
	Put(ctx context.Context, digest string, b []byte) error
	// Get returns ErrNotFound for a module that is not there.
	Get(ctx context.Context, digest string) ([]byte, error)
	Delete(ctx context.Context, digest string) error
}

// sharedTimeout bounds an upload to the shared store; fetchTimeout a
// fetch from it, which a compilation waits for.
const (
	sharedTimeout = 30 * time.Second
	fetchTimeout  = 10 * time.Second
)

// reshareAfter is how often a module looked up is checked to still be in
// the shared store (another replica's collection may have removed it).
const reshareAfter = time.Minute

// Registry stores modules as DIR/<sha256>.wasm, and, when shared (Share),
// also in a store every replica reads: a module uploaded through one
// replica is fetched from there by another the first time it is looked up
// or downloaded.
type Registry struct {
	dir    string
	mu     sync.Mutex
	has    map[string]*entry
	shared Shared
	now    func() time.Time
}

// Share keeps the modules in s as well. Call it before any other use.
func (r *Registry) Share(s Shared) { r.shared = s }

// Open uses (and creates) dir, indexing the modules already there.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{dir: dir, has: map[string]*entry{}, now: time.Now}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	for _, e := range ents {
		d, ok := strings.CutSuffix(e.Name(), ".wasm")
		if !ok || !validDigest(d) {
			continue
		}
		// A restart gives every module a whole grace period: whatever
		// named it before is not known yet.
		if info, err := e.Info(); err == nil {
			r.has[d] = &entry{size: info.Size(), seen: r.now()}
		}
	}
	return r, nil
}

func validDigest(d string) bool {
	b, err := hex.DecodeString(d)
	return err == nil && len(b) == sha256.Size && d == strings.ToLower(d)
}

// Put stores the module read from body (at most MaxModuleBytes) and returns
// its digest. The bytes must start with the Wasm magic number. Storing the
// same module again is a no-op.
func (r *Registry) Put(body io.Reader) (Module, error) {
	b, err := io.ReadAll(io.LimitReader(body, MaxModuleBytes+1))
	if err != nil {
		return Module{}, fmt.Errorf("registry: reading module: %w", err)
	}
	if len(b) > MaxModuleBytes {
		return Module{}, fmt.Errorf("registry: module is larger than %d bytes", MaxModuleBytes)
	}
	if !bytes.HasPrefix(b, wasmMagic) {
		return Module{}, errors.New("registry: not a Wasm binary (no \\0asm magic number); upload the compiled .wasm, not its source")
	}
	sum := sha256.Sum256(b)
	m := Module{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
	if r.shared != nil {
		// First, so that no replica names a module the others cannot get.
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		err := r.shared.Put(ctx, m.SHA256, b)
		cancel()
		if err != nil {
			return Module{}, fmt.Errorf("registry: storing the module for the other replicas: %w", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return m, r.storeLocked(m, b)
}

// storeLocked writes a module's file, unless it is there.
func (r *Registry) storeLocked(m Module, b []byte) error {
	if e, ok := r.has[m.SHA256]; ok {
		e.seen = r.now()
		if r.shared != nil {
			e.sharedAt = r.now()
		}
		return nil
	}
	tmp, err := os.CreateTemp(r.dir, ".upload-*")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("registry: writing module: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.path(m.SHA256)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("registry: %w", err)
	}
	e := &entry{size: m.Size, seen: r.now()}
	if r.shared != nil {
		e.sharedAt = e.seen
	}
	r.has[m.SHA256] = e
	return nil
}

// fetch copies a module this replica lacks from the shared store, checking
// its digest; false when it is not there either (or cannot be read).
func (r *Registry) fetch(digest string) bool {
	if r.shared == nil || !validDigest(digest) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	b, err := r.shared.Get(ctx, digest)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != digest {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.storeLocked(Module{SHA256: digest, Size: int64(len(b))}, b) == nil
}

// reshare puts a module back into the shared store if another replica's
// collection removed it while this one still names it: at the first
// lookup after a removal was seen (SharedDeleted), else at most once a
// minute per module, in the background (a compilation does not wait).
func (r *Registry) reshare(digest string) {
	r.mu.Lock()
	e, ok := r.has[digest]
	due := ok && r.shared != nil && r.now().Sub(e.sharedAt) >= reshareAfter
	if due {
		e.sharedAt = r.now()
	}
	r.mu.Unlock()
	if !due {
		return
	}
	go func() {
		b, err := os.ReadFile(r.path(digest))
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		defer cancel()
		_ = r.shared.Put(ctx, digest, b)
	}()
}

// SharedDeleted is told that a module was removed from the shared store
// (by the replica that collects it). A module this replica holds is
// marked as no longer shared, so the next lookup of it puts it back
// (Reshare does so now); it reports whether this replica holds it.
func (r *Registry) SharedDeleted(digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.has[digest]
	if ok {
		e.sharedAt = time.Time{}
	}
	return ok
}

// Reshare puts a module this replica holds back into the shared store
// now (in the background) unless it was put or found there within the
// last minute.
func (r *Registry) Reshare(digest string) { r.reshare(digest) }

func (r *Registry) path(d string) string { return filepath.Join(r.dir, d+".wasm") }

// Has reports whether digest (64 lower-case hex digits) is stored. A
// module looked up (a change being validated names it) starts a new grace
// period, so it cannot be collected between validation and commit.
//
// Shared, a module only another replica stored is fetched now, and one
// held here is put back in the shared store if it went missing there.
func (r *Registry) Has(digest string) bool {
	r.mu.Lock()
	e, ok := r.has[digest]
	if ok {
		e.seen = r.now()
	}
	r.mu.Unlock()
	if ok {
		r.reshare(digest)
		return true
	}
	return r.fetch(digest)
}

// Open returns the module's file; the caller closes it. A download
// restarts the module's grace period, and a module removed by Collect
// after Open stays readable through the open file.
func (r *Registry) Open(digest string) (*os.File, error) {
	r.mu.Lock()
	_, ok := r.has[digest]
	r.mu.Unlock()
	if !ok && !r.fetch(digest) {
		return nil, ErrNotFound
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.has[digest]
	if !ok {
		return nil, ErrNotFound
	}
	e.seen = r.now()
	return os.Open(r.path(digest))
}

// List returns every stored module, by digest.
func (r *Registry) List() []Module {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Module, 0, len(r.has))
	for d, e := range r.has {
		out = append(out, e.module(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SHA256 < out[j].SHA256 })
	return out
}

func (e *entry) module(digest string) Module {
	return Module{SHA256: digest, Size: e.size, Refs: e.refs, UnusedSince: e.seen}
}

// Collect is the registry's garbage collection. refs counts, per digest,
// the resources and snapshots that name a module now (every one the
// control plane holds: a module a Filter resource names stays even when no
// sidecar runs it). A module with references is kept and its grace period
// restarts; one without any that was neither uploaded, looked up nor
// referenced for grace is deleted. The grace period protects a sidecar
// still downloading a module its previous snapshot named, and an upload
// whose Filter is not applied yet. Collect returns what it deleted; a
// module it could not delete is kept and reported in the error.
func (r *Registry) Collect(refs map[string]int, grace time.Duration) ([]Module, error) {
	return r.collect(refs, grace, r.shared != nil)
}

// CollectLocal is Collect on this replica's copies only: the shared store
// keeps its blobs. A shared registry's replicas that do not lead the
// collection use it; the one that does uses Collect, on the latest shared
// state, so a replica a revision behind never takes a module from the
// others.
func (r *Registry) CollectLocal(refs map[string]int, grace time.Duration) ([]Module, error) {
	return r.collect(refs, grace, false)
}

func (r *Registry) collect(refs map[string]int, grace time.Duration, shared bool) ([]Module, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var gone []Module
	var errs []error
	for d, e := range r.has {
		e.refs = refs[d]
		if e.refs > 0 {
			e.seen = now
			continue
		}
		if now.Sub(e.seen) < grace {
			continue
		}
		if err := os.Remove(r.path(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("registry: removing unused module %s: %w", d, err))
			continue
		}
		if shared {
			// The collecting replica counted the references of the
			// latest shared mesh; one that still needs the module (a
			// change committed since) puts it back (reshare).
			ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
			err := r.shared.Delete(ctx, d)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("registry: removing unused module %s from the shared store: %w", d, err))
			}
		}
		gone = append(gone, e.module(d))
		delete(r.has, d)
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].SHA256 < gone[j].SHA256 })
	return gone, errors.Join(errs...)
}
