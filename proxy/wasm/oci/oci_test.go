package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is go-containerregistry's in-process registry on loopback,
// with a log of the requests it answered and optional basic auth.
type testRegistry struct {
	host string
	mu   sync.Mutex
	log  []string
	user string // when set, every request needs basic auth user:pass
	pass string
	hang atomic.Bool // when set, requests block until the test ends
	done chan struct{}
}

func startRegistry(t *testing.T, tlsOn bool) *testRegistry {
	t.Helper()
	r := &testRegistry{done: make(chan struct{})}
	reg := registry.New(registry.Logger(nilLogger()))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.hang.Load() {
			select {
			case <-r.done:
			case <-req.Context().Done():
			}
			return
		}
		if r.user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		r.mu.Lock()
		r.log = append(r.log, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		reg.ServeHTTP(w, req)
	})
	var srv *httptest.Server
	if tlsOn {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(func() { close(r.done); srv.Close() })
	r.host = strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
	if tlsOn {
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pemCert(srv.Certificate().Raw), 0o644); err != nil {
			t.Fatal(err)
		}
		caFiles.Store(r.host, ca)
	}
	return r
}

var caFiles sync.Map

func (r *testRegistry) reset() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log
	r.log = nil
	return l
}

// blobGets counts GETs of blobs (not manifests) in a request log.
func blobGets(log []string) int {
	n := 0
	for _, l := range log {
		if strings.HasPrefix(l, "GET ") && strings.Contains(l, "/blobs/") {
			n++
		}
	}
	return n
}

// fakeModule is a small valid-looking module: the Wasm header and a body.
func fakeModule(body string) []byte {
	return append([]byte("\x00asm\x01\x00\x00\x00"), body...)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPushPullBothLayouts(t *testing.T) {
	reg := startRegistry(t, false)
	for _, layout := range []string{LayoutWasm, LayoutImage} {
		mod := fakeModule("layout " + layout)
		ref := reg.host + "/filters/" + layout + ":v1"
		digest, err := Push(context.Background(), ref, mod, PushOptions{Layout: layout})
		if err != nil {
			t.Fatal(err)
		}
		p := NewPuller(Options{})
		m, err := p.Pull(context.Background(), Source{Ref: ref})
		if err != nil {
			t.Fatalf("%s: %v", layout, err)
		}
		if !bytes.Equal(m.Bytes, mod) || m.SHA256 != sum(mod) || m.Manifest != digest || m.Cached {
			t.Fatalf("%s: pulled %d bytes sha %s manifest %s cached %v; pushed %d bytes sha %s manifest %s",
				layout, len(m.Bytes), m.SHA256, m.Manifest, m.Cached, len(mod), sum(mod), digest)
		}
		if m.Repository != reg.host+"/filters/"+layout {
			t.Fatalf("repository %q", m.Repository)
		}
		// By digest as well.
		m2, err := p.Pull(context.Background(), Source{Ref: reg.host + "/filters/" + layout + "@" + digest})
		if err != nil || m2.SHA256 != m.SHA256 {
			t.Fatalf("by digest: %+v %v", m2.SHA256, err)
		}
	}
}

func TestCacheServesWithoutTheRegistry(t *testing.T) {
	reg := startRegistry(t, false)
	mod := fakeModule("cached")
	ref := reg.host + "/filters/c:v1"
	if _, err := Push(context.Background(), ref, mod, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := NewPuller(Options{CacheDir: dir}).Pull(context.Background(), Source{Ref: ref}); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	// A new puller on the same directory (a restarted sidecar).
	p := NewPuller(Options{CacheDir: dir})
	m, err := p.Pull(context.Background(), Source{Ref: ref})
	if err != nil || !m.Cached || !bytes.Equal(m.Bytes, mod) {
		t.Fatalf("cached pull: cached=%v err=%v", m.Cached, err)
	}
	if l := reg.reset(); len(l) != 0 {
		t.Fatalf("a cached pull reached the registry: %v", l)
	}
	// A corrupted cache file is not trusted: the module is pulled again.
	if err := os.WriteFile(filepath.Join(dir, "modules", sum(mod)+".wasm"), fakeModule("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err = NewPuller(Options{CacheDir: dir}).Pull(context.Background(), Source{Ref: ref})
	if err != nil || m.Cached || !bytes.Equal(m.Bytes, mod) {
		t.Fatalf("after corruption: cached=%v same=%v err=%v", m.Cached, bytes.Equal(m.Bytes, mod), err)
	}
}

func TestPullPolicyAlways(t *testing.T) {
	reg := startRegistry(t, false)
	ref := reg.host + "/filters/a:latest"
	v1, v2 := fakeModule("one"), fakeModule("two")
	if _, err := Push(context.Background(), ref, v1, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	p := NewPuller(Options{})
	if _, err := p.Pull(context.Background(), Source{Ref: ref, Policy: Always}); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	m, err := p.Pull(context.Background(), Source{Ref: ref, Policy: Always})
	if err != nil || !bytes.Equal(m.Bytes, v1) {
		t.Fatal(err)
	}
	if l := reg.reset(); len(l) == 0 || blobGets(l) != 0 {
		t.Fatalf("always with an unchanged tag: requests %v, want a HEAD and no blob", l)
	}
	if _, err := Push(context.Background(), ref, v2, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Pull(context.Background(), Source{Ref: ref}); !bytes.Equal(m.Bytes, v1) {
		t.Fatal("if_not_present looked the moved tag up again")
	}
	if m, err := p.Pull(context.Background(), Source{Ref: ref, Policy: Always}); err != nil || !bytes.Equal(m.Bytes, v2) {
		t.Fatalf("always did not follow the moved tag: %v", err)
	}
}

func TestPinnedTagThatMovedIsRefused(t *testing.T) {
	reg := startRegistry(t, false)
	ref := reg.host + "/filters/p:v1"
	d1, err := Push(context.Background(), ref, fakeModule("one"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPuller(Options{})
	if _, err := p.Pull(context.Background(), Source{Ref: ref + "@" + d1}); err != nil {
		t.Fatal(err)
	}
	d2, err := Push(context.Background(), ref, fakeModule("two"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref + "@" + d1})
	if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), d2) {
		t.Fatalf("moved pinned tag: %v", err)
	}
}

func TestBadManifestsNameWhatTheyHold(t *testing.T) {
	reg := startRegistry(t, false)
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	two, _ := mutate.AppendLayers(base, static.NewLayer(fakeModule("a"), MediaTypeWasm), static.NewLayer(fakeModule("b"), MediaTypeWasm))
	odd, _ := mutate.AppendLayers(base, static.NewLayer(fakeModule("a"), "application/x-mystery"))
	notWasm, _ := mutate.AppendLayers(base, static.NewLayer([]byte("#!/bin/sh\n"), MediaTypeWasm))
	for _, c := range []struct {
		tag  string
		img  v1.Image
		want string
	}{
		{"two", two, "has 2 layers (application/wasm, application/wasm)"},
		{"odd", odd, "application/x-mystery"},
		{"notwasm", notWasm, "not a Wasm module"},
	} {
		ref, err := name.ParseReference(reg.host + "/bad/" + c.tag + ":v1")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, c.img); err != nil {
			t.Fatal(err)
		}
		_, err = NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref.String()})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.tag, err, c.want)
		}
	}
	// An index (several platforms) is refused by name.
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: two})
	ref, _ := name.ParseReference(reg.host + "/bad/index:v1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref.String()}); err == nil || !strings.Contains(err.Error(), "image index") {
		t.Errorf("index: %v", err)
	}
	// An image layer without plugin.wasm names what it holds.
	other, _ := mutate.AppendLayers(base, tarLayer(t, "other.wasm", fakeModule("x")))
	ref, _ = name.ParseReference(reg.host + "/bad/nofile:v1")
	if err := remote.Write(ref, other); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref.String()}); err == nil || !strings.Contains(err.Error(), "no plugin.wasm in the layer (it holds other.wasm)") {
		t.Errorf("no plugin.wasm: %v", err)
	}
}

func TestModuleLimitRefusesBeforeFetching(t *testing.T) {
	reg := startRegistry(t, false)
	ref := reg.host + "/filters/big:v1"
	if _, err := Push(context.Background(), ref, fakeModule(strings.Repeat("x", 4096)), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	_, err := NewPuller(Options{MaxBytes: 1024}).Pull(context.Background(), Source{Ref: ref})
	if err == nil || !strings.Contains(err.Error(), "over the 1024-byte module limit") {
		t.Fatalf("big module: %v", err)
	}
	if n := blobGets(reg.reset()); n != 0 {
		t.Fatalf("fetched %d blobs of a module over the limit", n)
	}
	// The image layout's file is bounded too, however well it compresses.
	if _, err := Push(context.Background(), ref, fakeModule(strings.Repeat("x", 1<<20)), PushOptions{Layout: LayoutImage}); err != nil {
		t.Fatal(err)
	}
	_, err = NewPuller(Options{MaxBytes: 64 << 10}).Pull(context.Background(), Source{Ref: ref})
	if err == nil || !strings.Contains(err.Error(), "module limit") {
		t.Fatalf("big file in a small layer: %v", err)
	}
}

func TestHangingRegistryIsBounded(t *testing.T) {
	reg := startRegistry(t, false)
	reg.hang.Store(true)
	start := time.Now()
	_, err := NewPuller(Options{Timeout: 300 * time.Millisecond}).Pull(context.Background(), Source{Ref: reg.host + "/filters/h:v1"})
	if err == nil {
		t.Fatal("a hanging registry answered")
	}
	t.Logf("hanging registry: %v after %v", err, time.Since(start))
}

func TestPullSecret(t *testing.T) {
	reg := startRegistry(t, false)
	reg.user, reg.pass = "robot", "s3cret"
	ref := reg.host + "/private/f:v1"
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	auth := base64.StdEncoding.EncodeToString([]byte("robot:s3cret"))
	os.WriteFile(good, []byte(fmt.Sprintf(`{"auths":{"https://%s/v1/":{"auth":%q}}}`, reg.host, auth)), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(fmt.Sprintf(`{"auths":{%q:{"username":"robot","password":"nope"}}}`, reg.host)), 0o600)
	t.Setenv("DOCKER_CONFIG", dir) // no config.json there: anonymous

	if _, err := Push(context.Background(), ref, fakeModule("private"), PushOptions{PullSecret: good}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref}); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToUpper(err.Error()), "UNAUTHORIZED") {
		t.Fatalf("anonymous pull of a private module: %v", err)
	}
	if _, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref, PullSecret: bad}); err == nil {
		t.Fatal("a wrong password pulled")
	}
	if m, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref, PullSecret: good}); err != nil || !bytes.Equal(m.Bytes, fakeModule("private")) {
		t.Fatalf("pull with the secret: %v", err)
	}
	if _, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref, PullSecret: filepath.Join(dir, "missing.json")}); err == nil || !strings.Contains(err.Error(), "pull_secret") {
		t.Fatalf("missing secret file: %v", err)
	}
}

func TestRegistryOverTLS(t *testing.T) {
	reg := startRegistry(t, true)
	ca, _ := caFiles.Load(reg.host)
	ref := reg.host + "/filters/tls:v1"
	if _, err := Push(context.Background(), ref, fakeModule("tls"), PushOptions{CAFile: ca.(string)}); err != nil {
		t.Fatal(err)
	}
	m, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: ref, CAFile: ca.(string)})
	if err != nil || !bytes.Equal(m.Bytes, fakeModule("tls")) {
		t.Fatalf("pull over TLS: %v", err)
	}
	var logs []string
	for _, l := range reg.reset() {
		logs = append(logs, l)
	}
	if len(logs) == 0 {
		t.Fatal("the TLS registry saw no request")
	}
}

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in      string
		pinned  bool
		wantErr bool
	}{
		{"127.0.0.1:5000/a/b:v1", false, false},
		{"127.0.0.1:5000/a/b@sha256:" + strings.Repeat("a", 64), false, false},
		{"127.0.0.1:5000/a/b:v1@sha256:" + strings.Repeat("a", 64), true, false},
		{"", false, true},
		{"UPPER/case:v1", false, true},
		{"a/b@sha256:short", false, true},
	} {
		_, pinned, err := ParseRef(c.in)
		if (err != nil) != c.wantErr || (pinned != nil) != c.pinned {
			t.Errorf("%q: pinned %v err %v", c.in, pinned != nil, err)
		}
	}
	if _, err := NewPuller(Options{}).Pull(context.Background(), Source{Ref: "127.0.0.1:1/a:v1", Policy: "sometimes"}); err == nil || !strings.Contains(err.Error(), "pull policy") {
		t.Fatalf("bad policy: %v", err)
	}
}

func tarLayer(t *testing.T, file string, body []byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: file, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }
