package wasm

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/config"
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

	// An unnamed plugin (plugin_name: "") prints Envoy's bare "wasm log:"
	// prefix; the plugin field still names the filter.
	unnamed := ""
	spec, err := SpecWithModule(config.Filter{Name: "anon", PluginName: &unnamed, PoolSize: 1}, guestbuild.GoSDK(t, "headers"))
	if err != nil {
		t.Fatal(err)
	}
	runStream(load(t, rt, spec, Env{}), newStream("/anon", "x-log", "1"))
	got = logs.FilterMessage("wasm log: headers guest saw /anon").All()
	if len(got) != 1 {
		t.Fatalf("no unnamed Envoy-shaped guest line; have %v", logs.All())
	}
	if f := got[0].ContextMap(); f["plugin"] != "anon" {
		t.Errorf("unnamed plugin's field plugin = %v, want anon", f["plugin"])
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
		{PluginSpec{Name: "f", PluginName: new(string)}, "wasm log: "},
		{PluginSpec{Name: "f", PluginName: new(string), VMID: "v"}, "wasm log v: "},
		{PluginSpec{Name: "f", PluginName: ptr("envoy-name")}, "wasm log envoy-name: "},
	} {
		if got := envoyLogPrefix(c.s); got != c.want {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}

func ptr(s string) *string { return &s }

// TestPluginLogLevel: a plugin's log_level is what proxy_get_log_level
// answers and the lowest guest line written; two plugins sharing one VM
// keep their own levels; the sidecar's logger still applies on top. The
// guest is written with the Go SDK and in C, held to the same assertions.
func TestPluginLogLevel(t *testing.T) {
	for _, lang := range []string{"go", "c"} {
		t.Run(lang, func(t *testing.T) {
			if lang == "c" {
				testPluginLogLevel(t, guestbuild.C(t, "loglevel"))
			} else {
				testPluginLogLevel(t, guestbuild.GoSDK(t, "loglevel"))
			}
		})
	}
}

func testPluginLogLevel(t *testing.T, module []byte) {
	for _, tc := range []struct {
		name       string
		sidecar    zapcore.Level
		levels     [2]string // two plugins sharing one VM
		wantLevel  [2]string // proxy_get_log_level
		wantLowest [2]int    // lowest line written; 6: none
	}{
		{"default info", zapcore.DebugLevel, [2]string{"", "info"}, [2]string{"2", "2"}, [2]int{2, 2}},
		{"per plugin", zapcore.DebugLevel, [2]string{"trace", "error"}, [2]string{"0", "4"}, [2]int{0, 4}},
		{"critical", zapcore.DebugLevel, [2]string{"critical", "warn"}, [2]string{"5", "3"}, [2]int{5, 3}},
		{"sidecar at warn", zapcore.WarnLevel, [2]string{"debug", "error"}, [2]string{"3", "4"}, [2]int{3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(tc.sidecar)
			rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close(context.Background()) })
			var ps [2]*Plugin
			for i := range ps {
				ps[i] = load(t, rt, PluginSpec{Name: fmt.Sprintf("p%d", i), Module: module, PoolSize: 1, ShareVMs: true, LogLevel: tc.levels[i]}, Env{})
			}
			if ps[0].group != ps[1].group {
				t.Fatal("the two plugins do not share their VM")
			}
			for i, p := range ps {
				s := newStream("/")
				runStream(p, s)
				if got := string(s.Request.Header.Peek("x-log-level")); got != tc.wantLevel[i] {
					t.Errorf("%s: proxy_get_log_level = %q, want %s", p.spec.Name, got, tc.wantLevel[i])
				}
				for l := 0; l <= 5; l++ {
					n := logs.FilterMessage(fmt.Sprintf("wasm log %s: loglevel line %d", p.spec.Name, l)).Len()
					if want := l >= tc.wantLowest[i]; (n == 1) != want || n > 1 {
						t.Errorf("%s: line at level %d written %d times, want written: %t", p.spec.Name, l, n, want)
					}
				}
			}
		})
	}
}

// TestLogLevelRefused: SpecWithModule refuses an unknown log_level,
// naming the filter and the field.
func TestLogLevelRefused(t *testing.T) {
	_, err := SpecWithModule(config.Filter{Name: "f", LogLevel: "verbose"}, []byte("\x00asm"))
	if err == nil || !strings.Contains(err.Error(), `filter "f": log_level: "verbose" is not one of trace, debug, info, warn, error, critical`) {
		t.Fatalf("err = %v", err)
	}
}

// TestPluginLogLevelWeftSDK: Weft's SDK, which drops lines below the
// host's level before calling proxy_log, keeps each plugin's lines when two
// plugins with different log_level share its VM, whichever loads first.
func TestPluginLogLevelWeftSDK(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: zap.New(core), CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	module := guestbuild.WeftSDK(t, "loglevel")
	quiet := load(t, rt, PluginSpec{Name: "quiet", Module: module, PoolSize: 1, ShareVMs: true, LogLevel: "error"}, Env{})
	chatty := load(t, rt, PluginSpec{Name: "chatty", Module: module, PoolSize: 1, ShareVMs: true, LogLevel: "debug"}, Env{})
	if quiet.group != chatty.group {
		t.Fatal("the two plugins do not share their VM")
	}
	runStream(quiet, newStream("/"))
	runStream(chatty, newStream("/"))
	for line, want := range map[string]int{
		"wasm log quiet: weftsdk debug line":  0,
		"wasm log quiet: weftsdk error line":  1,
		"wasm log chatty: weftsdk debug line": 1,
		"wasm log chatty: weftsdk error line": 1,
	} {
		if n := logs.FilterMessage(line).Len(); n != want {
			t.Errorf("%q written %d times, want %d", line, n, want)
		}
	}
}
