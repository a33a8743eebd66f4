package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
)

func TestPutOpenReopen(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mod := []byte("\x00asm\x01\x00\x00\x00")
	m, err := r.Put(bytes.NewReader(mod))
	sum := sha256.Sum256(mod)
	if err != nil || m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(mod)) || !r.Has(m.SHA256) {
		t.Fatalf("put: %+v %v", m, err)
	}
	if _, err := r.Put(strings.NewReader("(module)")); err == nil || !strings.Contains(err.Error(), "not a Wasm binary") {
		t.Fatalf("WAT text accepted: %v", err)
	}
	// A restarted registry finds what is on disk.
	r2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r2.Open(m.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if !bytes.Equal(b, mod) || len(r2.List()) != 1 {
		t.Fatalf("reopened: %q, %v", b, r2.List())
	}
	if _, err := r2.Open(strings.Repeat("0", 64)); err != ErrNotFound {
		t.Fatalf("missing module: %v", err)
	}
}
