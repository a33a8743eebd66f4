package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
)

func TestSpecFromConfig(t *testing.T) {
	mod := wat(t, "noop")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.wasm"), mod, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mod)
	digest := hex.EncodeToString(sum[:])

	s, err := SpecFromConfig(config.Filter{Name: "f", Module: config.Module{Path: "f.wasm", SHA256: digest},
		Config: `{"a":1}`, FailurePolicy: "fail_open", MemoryLimitMiB: 8, PoolSize: 2}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.FailOpen || s.MemoryLimitPages != 128 || s.PoolSize != 2 || string(s.PluginConfig) != `{"a":1}` ||
		s.CallbackTimeout != DefaultCallbackTimeout || s.MaxBodyBytes != DefaultMaxBodyBytes || len(s.Module) != len(mod) {
		t.Errorf("spec %+v", s)
	}

	bad := []struct {
		f    config.Filter
		want string
	}{
		{config.Filter{Name: "f", Module: config.Module{Path: "missing.wasm"}}, "module.path"},
		{config.Filter{Name: "f", Module: config.Module{Path: "f.wasm", SHA256: strings.Repeat("0", 64)}}, "module.sha256"},
		{config.Filter{Name: "f", Module: config.Module{URL: "http://127.0.0.1:1/f.wasm"}}, "module.sha256"},
		{config.Filter{Name: "f", Module: config.Module{Path: "f.wasm"}, FailurePolicy: "maybe"}, "failure_policy"},
		{config.Filter{Name: "f"}, "module"},
	}
	for _, c := range bad {
		if _, err := SpecFromConfig(c.f, dir); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `filter "f"`) {
			t.Errorf("%+v: err %v, want one naming the filter and %s", c.f, err, c.want)
		}
	}

	// A URL is fetched and verified.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(mod) }), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/f.wasm"
	if s, err := SpecFromConfig(config.Filter{Name: "f", Module: config.Module{URL: url, SHA256: digest}}, dir); err != nil || len(s.Module) != len(mod) {
		t.Errorf("url: %v", err)
	}
	if _, err := SpecFromConfig(config.Filter{Name: "f", Module: config.Module{URL: url, SHA256: strings.Repeat("1", 64)}}, dir); err == nil {
		t.Errorf("url with a wrong digest accepted")
	}
}

func TestKeyAndPauseTimeout(t *testing.T) {
	rt := newRuntime(t)
	spec := PluginSpec{Module: wat(t, "pause")}
	a := load(t, rt, spec, Env{})
	b := load(t, rt, spec, Env{})
	if a.Key() != b.Key() {
		t.Errorf("equal specs, different keys")
	}
	// Stop the guest's ticks: the paused stream must fail by policy when
	// the pause deadline passes.
	a.pauseTimeout = 50 * time.Millisecond
	a.slots[0].vm.Load().root(a).tickPeriod.Store(0)
	// Two wake-ups taken by the tick loop: it then ran a whole pass that
	// started after the period became 0, so no tick is running or to come
	// that could resume the stream below.
	for range 2 {
		a.wakeTicks()
		if !waitFor(func() bool { return len(a.tickWake) == 0 }) {
			t.Fatal("the tick loop does not take wake-ups")
		}
	}
	s := newStream("/")
	o := runStream(a, s)
	if o.req != filter.LocalReply || o.upstream || s.Response.StatusCode() != failStatus {
		t.Fatalf("outcome %+v status %d", o, s.Response.StatusCode())
	}
	if a.events.n[eventPauseTimeout].Load() != 1 || a.events.n[eventFailClosed].Load() != 1 {
		t.Errorf("pause timeout not counted")
	}
}

func TestRuntimeCloseStopsPlugins(t *testing.T) {
	rt, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := rt.Load(context.Background(), PluginSpec{Name: "p", Module: wat(t, "pause"), PoolSize: 2}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := p.NewStreamFilter(newStream("/")); f != nil {
		if _, onVM := f.(*streamFilter); onVM {
			t.Errorf("stream started on a VM after Runtime.Close")
		}
	}
	if _, err := rt.Load(context.Background(), PluginSpec{Name: "q", Module: wat(t, "noop")}, Env{}); err == nil {
		t.Errorf("Load after Close succeeded")
	}
}

// TestKeyCoversEveryField: changing any field of a PluginSpec changes its
// Key, so a reload never keeps a plugin whose spec changed (a field added
// later and forgotten in Key fails here).
func TestKeyCoversEveryField(t *testing.T) {
	base := PluginSpec{Module: []byte("m")}.withDefaults()
	rv := reflect.ValueOf(&base).Elem()
	for i := 0; i < rv.NumField(); i++ {
		s := base
		f := reflect.ValueOf(&s).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Slice:
			f.SetBytes(append(append([]byte(nil), f.Bytes()...), 'x'))
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Int, reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Uint32:
			f.SetUint(f.Uint() + 1)
		case reflect.Pointer: // *string (PluginName): unset → set to ""
			f.Set(reflect.New(f.Type().Elem()))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", rv.Type().Field(i).Name, f.Kind())
		}
		if s.Key() == base.Key() {
			t.Errorf("field %s does not change Key", rv.Type().Field(i).Name)
		}
	}
}
