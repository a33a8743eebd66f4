package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// The registry subcommands, end to end against a real registry on
// loopback: keygen, push a module file, sign, verify, pull it back.
func TestFilterRegistryCommands(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/hello:v1"
	dir := t.TempDir()
	module := append([]byte("\x00asm\x01\x00\x00\x00"), "a module"...)
	modFile := filepath.Join(dir, "hello.wasm")
	os.WriteFile(modFile, module, 0o644)
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runFilter(context.Background(), args, &out, &errb)
		return out.String() + errb.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("weft filter %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	key := filepath.Join(dir, "team")
	mustRun("keygen", "-out", key)
	out := mustRun("push", modFile, ref)
	if !strings.Contains(out, "manifest sha256:") || !strings.Contains(out, "module sha256:"+sha256Hex(module)) {
		t.Fatalf("push printed %q", out)
	}
	if out, err := run("verify", "-key", key+".pub", ref); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("verify before signing: %v %s", err, out)
	}
	mustRun("sign", "-key", key+".key", ref)
	if out := mustRun("verify", "-key", key+".pub", ref); !strings.Contains(out, "verified") {
		t.Fatalf("verify printed %q", out)
	}
	pulled := filepath.Join(dir, "pulled.wasm")
	mustRun("pull", "-o", pulled, ref)
	if b, _ := os.ReadFile(pulled); !bytes.Equal(b, module) {
		t.Fatal("pulled module differs from the pushed one")
	}
	if _, err := run("push", filepath.Join(dir, "team.pub"), ref); err == nil || !strings.Contains(err.Error(), "not a Wasm module") {
		t.Fatalf("pushing a non-module: %v", err)
	}
	if _, err := run("sign", ref); err == nil || !strings.Contains(err.Error(), "-key") {
		t.Fatalf("sign without a key: %v", err)
	}

	// -go builds a filter from source (the fault plugin, from the module
	// root) and pushes the result.
	t.Chdir(filepath.Join("..", ".."))
	out = mustRun("push", "-go", "./plugins/fault", strings.Replace(ref, ":v1", ":fault", 1))
	if !strings.Contains(out, "module sha256:") {
		t.Fatalf("push -go printed %q", out)
	}
	pulled = filepath.Join(dir, "fault.wasm")
	mustRun("pull", "-o", pulled, strings.Replace(ref, ":v1", ":fault", 1))
	if b, _ := os.ReadFile(pulled); !bytes.HasPrefix(b, []byte("\x00asm")) || len(b) < 100000 {
		t.Fatalf("pulled fault plugin: %d bytes", len(b))
	}
}
