package registry

import (
	"bytes"
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
}

// Registry stores modules as DIR/<sha256>.wasm.
type Registry struct {
	dir string
	mu  sync.Mutex
	has map[string]*entry
	now func() time.Time
}

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
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.has[m.SHA256]; ok {
		e.seen = r.now()
		return m, nil
	}
	tmp, err := os.CreateTemp(r.dir, ".upload-*")
	if err != nil {
		return Module{}, fmt.Errorf("registry: %w", err)
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return Module{}, fmt.Errorf("registry: writing module: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.path(m.SHA256)); err != nil {
		_ = os.Remove(tmp.Name())
		return Module{}, fmt.Errorf("registry: %w", err)
	}
	r.has[m.SHA256] = &entry{size: m.Size, seen: r.now()}
	return m, nil
}

func (r *Registry) path(d string) string { return filepath.Join(r.dir, d+".wasm") }

// Has reports whether digest (64 lower-case hex digits) is stored. A
// module looked up (a change being validated names it) starts a new grace
// period, so it cannot be collected between validation and commit.
func (r *Registry) Has(digest string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.has[digest]
	if ok {
		e.seen = r.now()
	}
	return ok
}

// Open returns the module's file; the caller closes it. A download
// restarts the module's grace period, and a module removed by Collect
// after Open stays readable through the open file.
func (r *Registry) Open(digest string) (*os.File, error) {
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
		gone = append(gone, e.module(d))
		delete(r.has, d)
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].SHA256 < gone[j].SHA256 })
	return gone, errors.Join(errs...)
}
