package conformance_test

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"io"
	"testing"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestForeignCompress: Envoy's compress and uncompress foreign functions
// round-trip, the compressed bytes are a zlib stream any reader takes, and
// garbage given to uncompress is an error, not a trap.
// The guest is written with the public Go SDK, in C and with Weft's own Go
// SDK, held to the same assertions.
func TestForeignCompress(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{"go", "c", "weft"} {
		t.Run(lang, func(t *testing.T) { testForeignCompress(t, guestIn(t, lang, "zlib")) })
	}
}

func testForeignCompress(t *testing.T, mod []byte) {
	plugin := loadPlugin(t, wasm.PluginSpec{Module: mod}, wasm.Env{})
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, wasm.Env{})

	res := px.mustDo(t, request{Header: [][2]string{{"X-Compress", "hello world! hello world!"}}})
	if res.Upstream == nil || res.Upstream.Get("x-roundtrip") != "hello world! hello world!" {
		t.Fatalf("round trip: status %d, %+v", res.Status, res.Upstream)
	}
	c, err := hex.DecodeString(res.Upstream.Get("x-compressed"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := zlib.NewReader(bytes.NewReader(c))
	if err != nil {
		t.Fatalf("not a zlib stream: %v", err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "hello world! hello world!" {
		t.Errorf("zlib reader: %q %v", b, err)
	}

	res = px.mustDo(t, request{Header: [][2]string{{"X-Uncompress-Bad", "1"}}})
	if res.Upstream == nil || res.Upstream.Get("x-uncompress-error") == "none" || res.Upstream.Get("x-uncompress-error") == "" {
		t.Fatalf("uncompress of garbage: status %d, error header %q", res.Status, res.Upstream.Get("x-uncompress-error"))
	}
}
