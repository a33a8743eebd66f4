package wasm

import (
	"testing"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// TestDeclareProperty: a Go SDK guest declares properties with Envoy's
// declare_property; a readonly one is set once and then refused, a mutable
// one is overwritten, a second declaration of a name and a protobuf type
// are refused with BadArgument, and each stream starts with nothing set.
func TestDeclareProperty(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Name: "decl", Module: guestbuild.GoSDK(t, "declareprop"), PoolSize: 1}, Env{})
	for i := 0; i < 2; i++ { // the second stream may set ro again
		s := newStream("/")
		runStream(p, s)
		for h, want := range map[string]string{
			"x-declare-ro":       "ok",
			"x-declare-rw":       "ok",
			"x-declare-ro-again": "error status returned by host: bad argument",
			"x-declare-pb":       "error status returned by host: bad argument",
			"x-ro-set-1":         "ok",
			"x-ro-set-2":         "error status returned by host: bad argument",
			"x-rw-set-1":         "ok",
			"x-rw-set-2":         "ok",
			"x-ro":               "first",
			"x-rw":               "two",
		} {
			if got := string(s.Request.Header.Peek(h)); got != want {
				t.Errorf("stream %d: %s = %q, want %q", i, h, got, want)
			}
		}
	}
}

// FuzzParseDeclareProperty: any bytes parse or are refused, never panic,
// and what parses has a name.
func FuzzParseDeclareProperty(f *testing.F) {
	f.Add([]byte{0x0a, 2, 'r', 'o', 0x10, 1, 0x18, 1, 0x28, 1})
	f.Add([]byte{0x0a, 1, 'x', 0x22, 3, 1, 2, 3})
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, _, ok := parseDeclareProperty(b)
		if ok && name == "" {
			t.Fatal("parsed without a name")
		}
	})
}

// TestParseDeclareProperty covers the fields weft reads and refuses.
func TestParseDeclareProperty(t *testing.T) {
	for _, c := range []struct {
		name     string
		in       []byte
		want     string
		readonly bool
		ok       bool
	}{
		{"string readonly", []byte{0x0a, 2, 'r', 'o', 0x10, 1, 0x18, 1, 0x28, 2}, "ro", true, true},
		{"bytes, schema skipped", []byte{0x0a, 1, 'x', 0x22, 2, 9, 9}, "x", false, true},
		{"no name", []byte{0x10, 1}, "", false, false},
		{"flatbuffers", []byte{0x0a, 1, 'x', 0x18, 2}, "", false, false},
		{"protobuf", []byte{0x0a, 1, 'x', 0x18, 3}, "", false, false},
		{"unknown span", []byte{0x0a, 1, 'x', 0x28, 3}, "", false, false},
		{"truncated", []byte{0x0a, 5, 'x'}, "", false, false},
	} {
		name, d, ok := parseDeclareProperty(c.in)
		if name != c.want || d.readonly != c.readonly || ok != c.ok {
			t.Errorf("%s: (%q, %v, %v), want (%q, %v, %v)", c.name, name, d.readonly, ok, c.want, c.readonly, c.ok)
		}
	}
}
