package wasm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// preparedDir is a cache dir of its own for prepared modules whose
// compiled code is the shared test cache's (wazero keeps it in a
// wazero-* subdirectory): the tests count preparations without paying
// wazero's compiler for a Go guest again.
func preparedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	shared := guestbuild.CompileCacheDir(t)
	ents, err := os.ReadDir(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "wazero-") {
			if err := os.Symlink(filepath.Join(shared, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func runtimeIn(t *testing.T, dir string) *Runtime {
	t.Helper()
	rt, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// A module prepared once (rewritten, its data image split out) is read
// back from the cache dir by the next load, in the same runtime (a
// config-only reload) and in another (a restart), and serves the same.
func TestPreparedModuleReadBack(t *testing.T) {
	dir := preparedDir(t)
	mod := guestbuild.GoSDK(t, "noop")
	rt := runtimeIn(t, dir)
	p := load(t, rt, PluginSpec{Name: "a", Module: mod}, Env{})
	if n := rt.preparations.Load(); n != 1 {
		t.Fatalf("first load: %d preparations, want 1", n)
	}
	if !p.interruptible {
		t.Fatal("the Go guest was not rewritten with its interrupt flag")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "weft-prepared", "*"))
	if len(files) != 1 {
		t.Fatalf("prepared files: %v, want one", files)
	}
	// A config-only reload: same module, same runtime.
	load(t, rt, PluginSpec{Name: "b", Module: mod, PluginConfig: []byte("x")}, Env{})
	if n := rt.preparations.Load(); n != 1 {
		t.Fatalf("second load of the same module prepared it again (%d)", n)
	}
	// A restart: another runtime on the same dir.
	rt2 := runtimeIn(t, dir)
	p2 := load(t, rt2, PluginSpec{Name: "c", Module: mod}, Env{})
	if n := rt2.preparations.Load(); n != 0 {
		t.Fatalf("a new runtime prepared a module its cache dir has (%d)", n)
	}
	if !p2.interruptible {
		t.Fatal("the module read back lost its interrupt flag")
	}
	// Trusted is another preparation (no rewrite): another key.
	load(t, rt2, PluginSpec{Name: "d", Module: mod, Trusted: true}, Env{})
	if n := rt2.preparations.Load(); n != 1 {
		t.Fatalf("trusted load: %d preparations, want 1", n)
	}
	s := newStream("/")
	f := p2.NewStreamFilter(s)
	defer f.OnDone(s)
	if st := f.OnRequestHeaders(s, true); st != filter.Continue {
		t.Fatalf("the module read back: request headers status %v", st)
	}
}

// A damaged file is ignored, the module prepared again and the file
// rewritten whole.
func TestPreparedModuleDamagedFile(t *testing.T) {
	dir := preparedDir(t)
	mod := guestbuild.GoSDK(t, "noop")
	rt := runtimeIn(t, dir)
	load(t, rt, PluginSpec{Name: "a", Module: mod}, Env{})
	files, _ := filepath.Glob(filepath.Join(dir, "weft-prepared", "*"))
	if len(files) != 1 {
		t.Fatalf("prepared files: %v", files)
	}
	good, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"flipped":   append(append([]byte{}, good[:100]...), append([]byte{good[100] ^ 1}, good[101:]...)...),
		"empty":     {},
	} {
		if err := os.WriteFile(files[0], bad, 0o600); err != nil {
			t.Fatal(err)
		}
		before := rt.preparations.Load()
		load(t, rt, PluginSpec{Name: "b-" + name, Module: mod}, Env{})
		if rt.preparations.Load() != before+1 {
			t.Fatalf("%s: the damaged file was used", name)
		}
		again, _ := os.ReadFile(files[0])
		if !bytes.Equal(again, good) {
			t.Fatalf("%s: the file was not rewritten whole", name)
		}
	}
}

func TestPreparedEncoding(t *testing.T) {
	for _, p := range []preparedModule{
		{code: []byte("\x00asm code"), image: []byte("image"), interruptible: true},
		{code: []byte("\x00asm code")},
		{code: []byte("\x00asm"), image: []byte{}},
	} {
		got, err := decodePrepared(encodePrepared(p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.code, p.code) || !bytes.Equal(got.image, p.image) || (got.image == nil) != (p.image == nil) || got.interruptible != p.interruptible {
			t.Fatalf("round trip of %+v gave %+v", p, got)
		}
	}
}

func FuzzDecodePrepared(f *testing.F) {
	f.Add(encodePrepared(preparedModule{code: []byte("\x00asm"), image: []byte("img"), interruptible: true}))
	f.Add([]byte(preparedMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePrepared(b)
		if err != nil {
			return
		}
		// Whatever decodes encodes to the same bytes.
		if !bytes.Equal(encodePrepared(p), b) {
			t.Fatalf("decoded %q but it encodes otherwise", b)
		}
	})
}
