package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/testserver"
	"github.com/weftmesh/weft/proxy/wasm"
)

// swapConfig is a listener with one filter "edge" whose module file (in
// the config's directory) and plugin config a reload changes.
func swapConfig(addr, upAddr, module, pluginConfig string) string {
	return fmt.Sprintf(`
filters:
  - name: edge
    module: {path: %s}
    config: %q
    pool_size: 2
listeners:
  - name: main
    address: %s
    filters: [edge]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "%s"}]
`, module, pluginConfig, addr, upAddr)
}

// Hot swap from the watched file while 4 workers keep sending requests: a
// new plugin config, then a new module, each observed after its reload,
// with no failed request; a module that does not load (bad bytes, or
// on_configure refusing its config) is rejected, the chain in force keeps
// serving and /config_dump's last_rejected names the filter.
func TestWasmHotSwapUnderLoad(t *testing.T) {
	up := testserver.Start(t, "up")
	addr := testserver.FreeAddr(t)
	dir := t.TempDir()
	// Modules sit beside the config, named relative to it.
	guestFile(t, dir, "setheader")
	guestFile(t, dir, "router")
	if err := os.WriteFile(filepath.Join(dir, "broken.wasm"), []byte("\x00asm\x01\x00\x00\x00this is not a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, dir, swapConfig(addr, up.Addr, "setheader.wasm", "x-tag=v1"))

	// A module swap prepares (rewrites) and compiles the new module before
	// it flips. Both come from the on-disk cache the real sidecar also
	// keeps (-wasm-cache): precompile the modules this test swaps in, as
	// `weft` would have on an earlier load, so the swap is timed, not the
	// rewrite and wazero's compiler (seconds each for a Go guest under
	// -race).
	cache := guestbuild.CompileCacheDir(t)
	precompile(t, cache, filepath.Join(dir, "setheader.wasm"), filepath.Join(dir, "router.wasm"))
	p, err := New(context.Background(), Options{Logger: testLogger(t), DrainTimeout: 2 * time.Second, WasmCacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	if err := p.LoadFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := p.WatchFile(ctx, path, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr + "/"

	// seen counts, per observed behaviour, the responses the workers got.
	var mu sync.Mutex
	seen := map[string]int{}
	ld := startLoad(t, 4, 50000, func(cl *fasthttp.Client) string {
		st, body, h := get(t, cl, url, "X-User", "alice")
		if st != 200 || body != "up" {
			return fmt.Sprintf("%d %q", st, body)
		}
		key := "x-tag=" + string(h.Peek("X-Tag")) + " x-route=" + string(h.Peek("X-Route"))
		mu.Lock()
		seen[key]++
		mu.Unlock()
		return ""
	})
	cl := &fasthttp.Client{}
	behaviour := func() string {
		_, _, h := get(t, cl, url, "X-User", "alice")
		if h == nil {
			return ""
		}
		return "x-tag=" + string(h.Peek("X-Tag")) + " x-route=" + string(h.Peek("X-Route"))
	}
	progress := func(what string) {
		n := ld.Total()
		eventually(t, 10*time.Second, what, func() bool { return ld.Total() > n+50 })
	}
	if b := behaviour(); b != "x-tag=v1 x-route=" {
		t.Fatalf("before any swap: %q", b)
	}
	progress("load before the swaps")

	// 1. New plugin config, same module.
	v := p.Version()
	writeConfig(t, dir, swapConfig(addr, up.Addr, "setheader.wasm", "x-tag=v2"))
	eventually(t, 10*time.Second, "the config swap", func() bool { return p.Version() != v })
	if b := behaviour(); b != "x-tag=v2 x-route=" {
		t.Fatalf("after the config swap: %q", b)
	}
	progress("load after the config swap")

	// 2. Another module under the same filter name.
	v = p.Version()
	writeConfig(t, dir, swapConfig(addr, up.Addr, "router.wasm", "alice"))
	eventually(t, 10*time.Second, "the module swap", func() bool { return p.Version() != v })
	if b := behaviour(); b != "x-tag= x-route=canary" {
		t.Fatalf("after the module swap: %q", b)
	}
	// The workers' requests that began on the old chain may still reach
	// the upstream after this one: look until the last one it saw is new.
	eventually(t, 10*time.Second, "the upstream to see the router's x-route", func() bool {
		_ = behaviour()
		return string(up.Last().Header.Peek("X-Route")) == "canary"
	})
	progress("load after the module swap")

	// 3. Modules that cannot load are refused; the router keeps serving.
	good := p.Version()
	for _, bad := range []struct{ name, module, config, want string }{
		{"bad bytes", "broken.wasm", "alice", "compile"},
		{"on_configure false", "setheader.wasm", "not a header assignment", "proxy_on_configure returned false"},
	} {
		before := rejections(t, p)
		writeConfig(t, dir, swapConfig(addr, up.Addr, bad.module, bad.config))
		eventually(t, 10*time.Second, bad.name+" to be rejected", func() bool { return rejections(t, p) > before })
		if p.Version() != good {
			t.Fatalf("%s: the version changed %s → %s", bad.name, good, p.Version())
		}
		msg, _ := p.ConfigDump().(map[string]any)["last_rejected"].(string)
		if !strings.Contains(msg, `filter "edge"`) || !strings.Contains(msg, bad.want) {
			t.Fatalf("%s: last_rejected %q does not name the filter and the failure (%s)", bad.name, msg, bad.want)
		}
		t.Logf("%s: rejected: %s", bad.name, msg)
		if b := behaviour(); b != "x-tag= x-route=canary" {
			t.Fatalf("%s: the chain in force changed: %q", bad.name, b)
		}
		progress("load after " + bad.name)
	}
	failed := ld.Failed()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d requests across 2 swaps and 2 rejected reloads; behaviours seen: %v", ld.Total(), seen)
	if failed != 0 {
		t.Fatalf("across the swaps: %s", ld)
	}
	for _, b := range []string{"x-tag=v1 x-route=", "x-tag=v2 x-route=", "x-tag= x-route=canary"} {
		if seen[b] == 0 {
			t.Errorf("the load never saw %q: %v", b, seen)
		}
	}
	for b := range seen {
		switch b {
		case "x-tag=v1 x-route=", "x-tag=v2 x-route=", "x-tag= x-route=canary":
		default:
			t.Errorf("a response showed no filter or a mix of two: %q ×%d", b, seen[b])
		}
	}
}

// rejections is the proxy's count of rejected configs.
func rejections(t testing.TB, p *Proxy) float64 {
	t.Helper()
	n, _ := metricValue(t, p, "weft_config_reloads_total", "result", "rejected")
	return n
}

// precompile prepares and compiles the modules at paths into the cache dir
// through the proxy's own Wasm runtime (wasm.Runtime.Precompile), so a
// later load reads both back.
func precompile(t *testing.T, dir string, paths ...string) {
	t.Helper()
	ctx := context.Background()
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeOptions{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	for _, p := range paths {
		code, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := rt.Precompile(ctx, wasm.PluginSpec{Name: filepath.Base(p), Module: code}); err != nil {
			t.Fatalf("precompile %s: %v", p, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Logf("precompiled %s in %v (cached in %s)", filepath.Base(p), d.Round(time.Millisecond), dir)
		}
	}
}
