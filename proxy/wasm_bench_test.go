package proxy

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// wasmBenchConfig is the plain one-route proxy with n no-op Go SDK filters
// on the listener (module at noop, default pool size).
func wasmBenchConfig(n int, noop string) string {
	var filters, names strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&filters, "  - name: noop%d\n    module: {path: %q}\n", i, noop)
		if i > 0 {
			names.WriteString(", ")
		}
		fmt.Fprintf(&names, "noop%d", i)
	}
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n", "", 1)
	if n == 0 {
		return cfg
	}
	cfg = strings.Replace(cfg, "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:0\n    filters: ["+names.String()+"]\n", 1)
	return cfg + "filters:\n" + filters.String()
}

// benchWasmHandler is BenchmarkProxyHandler with n no-op filters: the
// listener handler called directly, a real upstream behind it.
func benchWasmHandler(b *testing.B, n int) {
	noop := guestFile(b, b.TempDir(), "noop")
	serve, ctx, req := benchHandler(b, wasmBenchConfig(n, noop))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		req.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		serve(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	if cpu := processCPU() - cpu0; cpu > 0 {
		// The process's CPU per request (the upstream's included): on a
		// shared machine it moves less than ns/op.
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkProxyHandlerWasm0(b *testing.B) { benchWasmHandler(b, 0) }
func BenchmarkProxyHandlerWasm1(b *testing.B) { benchWasmHandler(b, 1) }
func BenchmarkProxyHandlerWasm4(b *testing.B) { benchWasmHandler(b, 4) }

// TestWasmBenchConfigShapes keeps the benchmark configs valid: 0, 1 and 4
// filters, all on the listener.
func TestWasmBenchConfigShapes(t *testing.T) {
	for _, n := range []int{0, 1, 4} {
		raw := []byte(expand(wasmBenchConfig(n, "/x/noop.wasm"), map[string]string{"up": "127.0.0.1:1"}))
		cfg, err := config.Parse("bench.yaml", raw)
		if err != nil {
			t.Fatalf("%d filters: %v\n%s", n, err, raw)
		}
		if len(cfg.Filters) != n || len(cfg.Listeners[0].Filters) != n {
			t.Fatalf("%d filters: config has %d declared, %d on the listener", n, len(cfg.Filters), len(cfg.Listeners[0].Filters))
		}
	}
}

// swapBenchConfig is a listener with one filter, "edge".
func swapBenchConfig(module, pluginConfig string) string {
	return fmt.Sprintf(`
filters:
  - name: edge
    module: {path: %q}
    config: %q
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [edge]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "127.0.0.1:1"}]
`, module, pluginConfig)
}

// swapProxy is a proxy (with the Wasm compilation cache in cacheDir, ""
// for memory) serving a config whose filter "edge" runs module.
func swapProxy(b *testing.B, cacheDir, module, pluginConfig string) *Proxy {
	b.Helper()
	p, err := New(context.Background(), Options{Logger: testLogger(b), WasmCacheDir: cacheDir, DrainTimeout: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	applyText(b, p, swapBenchConfig(module, pluginConfig))
	// One answer proves the listener is serving: a Shutdown that comes
	// before fasthttp's Serve has started never stops it (see the report).
	_, body, _ := get(b, &fasthttp.Client{}, "http://"+p.ListenerAddr("main").String()+"/")
	if !strings.Contains(body, "upstream") {
		b.Fatalf("the listener does not answer: %q", body)
	}
	return p
}

func applyText(b *testing.B, p *Proxy, text string) {
	b.Helper()
	if err := tryApply(b, p, text, nil); err != nil {
		b.Fatal(err)
	}
}

func stopProxy(p *Proxy) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Shutdown(ctx)
}

// BenchmarkWasmHotSwap times one Apply that replaces the module of a
// filter (noop → setheader, default pool size: compile when not cached,
// then start every VM of the pool):
//   - cold: nothing compiled anywhere (a fresh process without a cache dir);
//   - warm-disk: the module compiled by an earlier process into the
//     -wasm-cache directory (a restart, or a node that saw it before);
//   - config-only: the module is unchanged, only the plugin config differs
//     (the compiled module is shared, the VMs are new).
func BenchmarkWasmHotSwap(b *testing.B) {
	dir := b.TempDir()
	noop, setheader := guestFile(b, dir, "noop"), guestFile(b, dir, "setheader")
	to := swapBenchConfig(setheader, "x-tag=v1")

	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			p := swapProxy(b, "", noop, "")
			b.StartTimer()
			applyText(b, p, to)
			b.StopTimer()
			stopProxy(p)
		}
	})
	b.Run("warm-disk", func(b *testing.B) {
		cache := filepath.Join(b.TempDir(), "cache")
		stopProxy(swapProxy(b, cache, setheader, "x-tag=warm-up"))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			p := swapProxy(b, cache, noop, "")
			b.StartTimer()
			applyText(b, p, to)
			b.StopTimer()
			stopProxy(p)
		}
	})
	b.Run("config-only", func(b *testing.B) {
		p := swapProxy(b, "", setheader, "x-tag=v0")
		defer stopProxy(p)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			applyText(b, p, swapBenchConfig(setheader, fmt.Sprintf("x-tag=v%d", i+1)))
		}
	})
}
