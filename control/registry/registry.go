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
}

// Registry stores modules as DIR/<sha256>.wasm.
type Registry struct {
	dir string
	mu  sync.RWMutex
	has map[string]int64 // digest → size
}

// Open uses (and creates) dir, indexing the modules already there.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{dir: dir, has: map[string]int64{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	for _, e := range ents {
		d, ok := strings.CutSuffix(e.Name(), ".wasm")
		if !ok || !validDigest(d) {
			continue
		}
		if info, err := e.Info(); err == nil {
			r.has[d] = info.Size()
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
	if _, ok := r.has[m.SHA256]; ok {
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
	r.has[m.SHA256] = m.Size
	return m, nil
}

func (r *Registry) path(d string) string { return filepath.Join(r.dir, d+".wasm") }

// Has reports whether digest (64 lower-case hex digits) is stored.
func (r *Registry) Has(digest string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.has[digest]
	return ok
}

// Open returns the module's file; the caller closes it.
func (r *Registry) Open(digest string) (*os.File, error) {
	if !r.Has(digest) {
		return nil, ErrNotFound
	}
	return os.Open(r.path(digest))
}

// List returns every stored module, by digest.
func (r *Registry) List() []Module {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Module, 0, len(r.has))
	for d, n := range r.has {
		out = append(out, Module{SHA256: d, Size: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SHA256 < out[j].SHA256 })
	return out
}
