package wasm

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// TestGuestLogLine: a guest's proxy_log line reads as Envoy's ("wasm log
// NAME ROOT_ID VM_ID: TEXT") and carries the text, plugin, root context and
// VM id as fields, each key once.
func TestGuestLogLine(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	p := load(t, rt, PluginSpec{Name: "hdr", RootID: "r", VMID: "vm1", Module: guestbuild.GoSDK(t, "headers"), PoolSize: 1}, Env{})
	runStream(p, newStream("/seen", "x-log", "1"))

	got := logs.FilterMessage("wasm log hdr r vm1: headers guest saw /seen").All()
	if len(got) != 1 {
		t.Fatalf("no Envoy-shaped guest line; have %v", logs.All())
	}
	f := got[0].ContextMap()
	for k, want := range map[string]any{"guest": "headers guest saw /seen", "plugin": "hdr", "vm_id": "vm1", "root_context": uint32(1)} {
		if f[k] != want {
			t.Errorf("field %s = %v (%T), want %v", k, f[k], f[k], want)
		}
	}
	if got[0].Level != zapcore.WarnLevel {
		t.Errorf("level %v", got[0].Level)
	}
	if n := len(got[0].Context); n != 4 {
		t.Errorf("%d fields, want 4 (each key once): %v", n, got[0].Context)
	}
}

// TestEnvoyLogPrefix: the parts that are empty are left out, as Envoy does.
func TestEnvoyLogPrefix(t *testing.T) {
	for _, c := range []struct {
		s    PluginSpec
		want string
	}{
		{PluginSpec{}, "wasm log: "},
		{PluginSpec{Name: "f"}, "wasm log f: "},
		{PluginSpec{Name: "f", VMID: "v"}, "wasm log f v: "},
		{PluginSpec{Name: "f", RootID: "r", VMID: "v"}, "wasm log f r v: "},
	} {
		if got := envoyLogPrefix(c.s); got != c.want {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}
