package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of the Wasm artifact layout.
const (
	// MediaTypeWasm is the layer type of the CNCF Wasm OCI artifact.
	MediaTypeWasm = "application/wasm"
	// MediaTypeWasmLayer is the layer type Istio and Envoy tooling push.
	MediaTypeWasmLayer = "application/vnd.module.wasm.content.layer.v1+wasm"
	// MediaTypeWasmConfig is the config type weft pushes with a Wasm layer.
	MediaTypeWasmConfig = "application/vnd.module.wasm.config.v1+json"
)

// Pull policies.
const (
	IfNotPresent = "if_not_present"
	Always       = "always"
)

// ImageFile is the file the image layout carries the module in.
const ImageFile = "plugin.wasm"

// Source is one module to pull and how.
type Source struct {
	// Ref is the image reference: REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:HEX,
	// or REGISTRY/REPO:TAG@sha256:HEX (refused if TAG no longer names HEX).
	Ref string
	// Policy is IfNotPresent (the default) or Always.
	Policy string
	// PullSecret is a docker config.json ({"auths": {...}}) holding the
	// registry's credentials; empty: the user's docker config, if any.
	PullSecret string
	// CAFile is a PEM bundle trusted for the registry's TLS, beside the
	// system roots.
	CAFile string
}

// Module is a pulled module.
type Module struct {
	Bytes []byte
	// SHA256 is the hex digest of Bytes: what sidecars are pinned to.
	SHA256 string
	// Manifest is the manifest digest the reference resolved to
	// ("sha256:HEX"): what signatures sign.
	Manifest string
	// Repository is the reference's repository (registry/name).
	Repository string
	// Cached is true when the registry was not contacted at all.
	Cached bool
}

// Options configure a Puller.
type Options struct {
	// CacheDir keeps pulled modules across restarts ("" = in memory only).
	CacheDir string
	// MaxBytes bounds a module (default 256 MiB); a larger layer is refused
	// before it is fetched.
	MaxBytes int64
	// Timeout bounds one pull, every request of it included (default 60s).
	Timeout time.Duration
}

// Puller pulls modules and caches them by digest. It is safe for
// concurrent use.
type Puller struct {
	o     Options
	mu    sync.Mutex
	refs  map[string]cacheEntry // canonical reference → what it resolved to
	blobs map[string][]byte     // module sha256 → bytes, when CacheDir is ""
}

type cacheEntry struct {
	Ref      string `json:"ref"`
	Manifest string `json:"manifest"`
	Module   string `json:"module"`
}

// DefaultMaxBytes bounds a module when Options.MaxBytes is 0.
const DefaultMaxBytes = 256 << 20

// NewPuller returns a Puller; the cache directory is created on first use.
func NewPuller(o Options) *Puller {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	return &Puller{o: o, refs: map[string]cacheEntry{}, blobs: map[string][]byte{}}
}

// ParseRef parses a module reference. pinnedTag is set when the reference
// names both a tag and a digest.
func ParseRef(s string) (ref name.Reference, pinnedTag *name.Tag, err error) {
	if s == "" {
		return nil, nil, errors.New("empty reference")
	}
	ref, err = name.ParseReference(s)
	if err != nil {
		return nil, nil, err
	}
	if repoTag, _, ok := strings.Cut(s, "@"); ok {
		// A tag is what follows the last ':' after the last '/'.
		if i := strings.LastIndex(repoTag, ":"); i > strings.LastIndex(repoTag, "/") {
			t, err := name.NewTag(repoTag)
			if err != nil {
				return nil, nil, err
			}
			pinnedTag = &t
		}
	}
	return ref, pinnedTag, nil
}

func isDigest(ref name.Reference) bool {
	_, ok := ref.(name.Digest)
	return ok
}

// Pull returns the module src names, from the cache when the policy allows.
func (p *Puller) Pull(ctx context.Context, src Source) (Module, error) {
	m, err := p.pull(ctx, src)
	if err != nil {
		return Module{}, fmt.Errorf("oci %s: %w", src.Ref, err)
	}
	return m, nil
}

func (p *Puller) pull(ctx context.Context, src Source) (Module, error) {
	ref, pinnedTag, err := ParseRef(src.Ref)
	if err != nil {
		return Module{}, err
	}
	switch src.Policy {
	case "", IfNotPresent, Always:
	default:
		return Module{}, fmt.Errorf("pull policy %q is not %s or %s", src.Policy, IfNotPresent, Always)
	}
	key := ref.Name()
	if pinnedTag != nil {
		key = pinnedTag.Name() + "@" + ref.Identifier()
	}
	repo := ref.Context().Name()
	// A digest names immutable content; a tag is looked up again only
	// under Always.
	if (isDigest(ref) && pinnedTag == nil) || src.Policy != Always {
		if m, ok := p.cached(key); ok {
			m.Repository = repo
			return m, nil
		}
	}

	ctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	defer cancel()
	opts, err := remoteOptions(ctx, src)
	if err != nil {
		return Module{}, err
	}
	if pinnedTag != nil {
		d, err := remote.Head(*pinnedTag, opts...)
		if err != nil {
			return Module{}, fmt.Errorf("resolving pinned tag: %w", err)
		}
		if d.Digest.String() != ref.Identifier() {
			return Module{}, fmt.Errorf("tag %s now names %s, not the pinned %s: refused", pinnedTag.TagStr(), d.Digest, ref.Identifier())
		}
	}
	if !isDigest(ref) { // Always: one HEAD, and the blob only if new
		d, err := remote.Head(ref, opts...)
		if err != nil {
			return Module{}, err
		}
		if m, ok := p.cachedManifest(d.Digest.String()); ok {
			p.remember(key, cacheEntry{Ref: key, Manifest: m.Manifest, Module: m.SHA256})
			m.Repository, m.Cached = repo, false
			return m, nil
		}
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return Module{}, err
	}
	if desc.MediaType.IsIndex() {
		return Module{}, fmt.Errorf("%s is an image index (%s); push the module as a single manifest", ref.Identifier(), desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return Module{}, err
	}
	b, err := p.moduleFrom(img)
	if err != nil {
		return Module{}, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	sum := sha256.Sum256(b)
	m := Module{Bytes: b, SHA256: hex.EncodeToString(sum[:]), Manifest: desc.Digest.String(), Repository: repo}
	if err := p.store(key, m); err != nil {
		return Module{}, err
	}
	return m, nil
}

// moduleFrom takes the module out of one of the two accepted layouts.
func (p *Puller) moduleFrom(img v1.Image) ([]byte, error) {
	man, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if len(man.Layers) != 1 {
		return nil, fmt.Errorf("has %d layers (%s); want one: a Wasm layer (%s or %s) or an image layer holding %s",
			len(man.Layers), layerTypes(man.Layers), MediaTypeWasm, MediaTypeWasmLayer, ImageFile)
	}
	ld := man.Layers[0]
	if ld.Size > p.o.MaxBytes {
		return nil, fmt.Errorf("layer %s is %d bytes, over the %d-byte module limit", ld.Digest, ld.Size, p.o.MaxBytes)
	}
	layer, err := img.LayerByDigest(ld.Digest)
	if err != nil {
		return nil, err
	}
	var b []byte
	switch ld.MediaType {
	case MediaTypeWasm, MediaTypeWasmLayer:
		rc, err := layer.Compressed() // the blob as stored, digest-verified
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		if b, err = readAtMost(rc, p.o.MaxBytes); err != nil {
			return nil, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
	case types.OCILayer, types.DockerLayer, types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		rc, err := layer.Uncompressed()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		if b, err = fileFromTar(rc, ImageFile, p.o.MaxBytes); err != nil {
			return nil, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
	default:
		return nil, fmt.Errorf("layer media type %s is neither a Wasm layer (%s, %s) nor an image layer holding %s",
			ld.MediaType, MediaTypeWasm, MediaTypeWasmLayer, ImageFile)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm")) {
		return nil, fmt.Errorf("layer %s is not a Wasm module (no \\0asm header)", ld.Digest)
	}
	return b, nil
}

func layerTypes(ls []v1.Descriptor) string {
	ts := make([]string, len(ls))
	for i, l := range ls {
		ts[i] = string(l.MediaType)
	}
	return strings.Join(ts, ", ")
}

func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than the %d-byte module limit", limit)
	}
	return b, nil
}

// fileFromTar reads one regular file of an image layer, by its cleaned
// path ("plugin.wasm" and "./plugin.wasm" are the same file).
func fileFromTar(r io.Reader, file string, limit int64) ([]byte, error) {
	tr := tar.NewReader(r)
	var seen []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("no %s in the layer (it holds %s)", file, strings.Join(seen, ", "))
		}
		if err != nil {
			return nil, fmt.Errorf("reading the layer: %w", err)
		}
		clean := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if clean != file {
			if len(seen) < 8 {
				seen = append(seen, h.Name)
			}
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s is not a regular file", h.Name)
		}
		if h.Size > limit {
			return nil, fmt.Errorf("%s is %d bytes, over the %d-byte module limit", h.Name, h.Size, limit)
		}
		return readAtMost(tr, limit)
	}
}

// remoteOptions: auth from the pull secret (or the user's docker config),
// the registry CA, and the pull's deadline.
func remoteOptions(ctx context.Context, src Source) ([]remote.Option, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	if src.CAFile != "" {
		pem, err := os.ReadFile(src.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", src.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var keys authn.Keychain = authn.DefaultKeychain
	if src.PullSecret != "" {
		k, err := LoadPullSecret(src.PullSecret)
		if err != nil {
			return nil, err
		}
		keys = k
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuthFromKeychain(keys)}, nil
}

// LoadPullSecret reads a docker config.json (what a Kubernetes
// dockerconfigjson pull secret holds) as a keychain.
func LoadPullSecret(file string) (authn.Keychain, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pull_secret: %w", err)
	}
	var cfg struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("pull_secret %s: %w", file, err)
	}
	if len(cfg.Auths) == 0 {
		return nil, fmt.Errorf("pull_secret %s: no \"auths\" entries", file)
	}
	k := secretKeychain{}
	for host, a := range cfg.Auths {
		k[registryHost(host)] = a
	}
	return k, nil
}

type secretKeychain map[string]authn.AuthConfig

func (k secretKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[registryHost(r.RegistryStr())]; ok {
		return authn.FromConfig(a), nil
	}
	return authn.Anonymous, nil
}

// registryHost normalises a docker config key ("https://host/v1/", "host").
func registryHost(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	if s == "docker.io" || s == "registry-1.docker.io" {
		return name.DefaultRegistry
	}
	return s
}

// ---- cache ----

func (p *Puller) cached(key string) (Module, bool) {
	p.mu.Lock()
	e, ok := p.refs[key]
	p.mu.Unlock()
	if !ok && p.o.CacheDir != "" {
		b, err := os.ReadFile(p.refFile(key))
		if err == nil && json.Unmarshal(b, &e) == nil && e.Ref == key {
			ok = true
		}
	}
	if !ok {
		return Module{}, false
	}
	b, ok := p.blob(e.Module)
	if !ok {
		return Module{}, false
	}
	return Module{Bytes: b, SHA256: e.Module, Manifest: e.Manifest, Cached: true}, true
}

// cachedManifest finds a module by the manifest digest it came from.
func (p *Puller) cachedManifest(manifest string) (Module, bool) {
	return p.cached("manifest:" + manifest)
}

func (p *Puller) blob(sum string) ([]byte, bool) {
	if p.o.CacheDir == "" {
		p.mu.Lock()
		defer p.mu.Unlock()
		b, ok := p.blobs[sum]
		return b, ok
	}
	b, err := os.ReadFile(filepath.Join(p.o.CacheDir, "modules", sum+".wasm"))
	if err != nil {
		return nil, false
	}
	got := sha256.Sum256(b) // a cache file is checked, never trusted
	return b, hex.EncodeToString(got[:]) == sum
}

func (p *Puller) refFile(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(p.o.CacheDir, "refs", hex.EncodeToString(h[:16])+".json")
}

func (p *Puller) store(key string, m Module) error {
	if p.o.CacheDir == "" {
		p.mu.Lock()
		p.blobs[m.SHA256] = m.Bytes
		p.mu.Unlock()
	} else if err := writeAtomic(filepath.Join(p.o.CacheDir, "modules", m.SHA256+".wasm"), m.Bytes); err != nil {
		return fmt.Errorf("module cache: %w", err)
	}
	e := cacheEntry{Manifest: m.Manifest, Module: m.SHA256}
	p.remember("manifest:"+m.Manifest, e)
	p.remember(key, e)
	return nil
}

func (p *Puller) remember(key string, e cacheEntry) {
	e.Ref = key
	p.mu.Lock()
	p.refs[key] = e
	p.mu.Unlock()
	if p.o.CacheDir != "" {
		b, _ := json.Marshal(e)
		_ = writeAtomic(p.refFile(key), b) // a lost index entry only costs a pull
	}
}

func writeAtomic(file string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(file), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
