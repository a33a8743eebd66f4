package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

func reloadConfig(addr, cluster string, weightA int) string {
	return fmt.Sprintf(`
listeners:
  - name: main
    address: %s
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: r
            match: {prefix: /}
            route:
              weighted_clusters: [{cluster: %s, weight: %d}, {cluster: b, weight: %d}]
clusters:
  - name: a
    endpoints: [{address: "{{a}}"}]
  - name: b
    endpoints: [{address: "{{b}}"}]
  - name: c
    endpoints: [{address: "{{c}}"}]
`, addr, cluster, weightA, 100-weightA)
}

func TestHotReloadUnderLoadAndInvalidReload(t *testing.T) {
	a, b, c := testserver.Start(t, "a"), testserver.Start(t, "b"), testserver.Start(t, "c")
	vars := map[string]string{"a": a.Addr, "b": b.Addr, "c": c.Addr}
	addr := testserver.FreeAddr(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, expand(reloadConfig(addr, "a", 100), vars))

	p, err := New(context.Background(), Options{Logger: testLogger(t), DrainTimeout: 2 * time.Second,
		WasmCacheDir: guestbuild.CompileCacheDir(t)})
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

	ld := startLoad(t, 4, 20000, func(cl *fasthttp.Client) string {
		if st, body, _ := get(t, cl, url); st != 200 {
			return fmt.Sprintf("%d %s", st, body)
		}
		return ""
	})
	// Shift traffic a → c over several reloads while the load runs.
	v0 := p.Version()
	for i, w := range []int{90, 50, 10} {
		// The version before the write: the reload may land before this
		// goroutine runs again.
		prev := p.Version()
		writeConfig(t, dir, expand(reloadConfig(addr, "c", w), vars))
		eventually(t, 10*time.Second, fmt.Sprintf("reload %d", i), func() bool { return p.Version() != prev })
	}
	eventually(t, 5*time.Second, "traffic to c", func() bool { return c.Hits.Load() > 50 })

	// An invalid file is refused; the config in force keeps serving.
	good := p.Version()
	writeConfig(t, dir, strings.Replace(expand(reloadConfig(addr, "c", 10), vars), "weight: 90", "weight: 80", 1))
	eventually(t, 5*time.Second, "the rejection to be recorded", func() bool {
		d := p.ConfigDump().(map[string]any)
		_, rejected := d["last_rejected"]
		return rejected
	})
	if p.Version() != good {
		t.Fatalf("an invalid file changed the version %s → %s", good, p.Version())
	}
	msg := p.ConfigDump().(map[string]any)["last_rejected"].(string)
	if !strings.Contains(msg, "weft.yaml") || !strings.Contains(msg, "weight") {
		t.Fatalf("rejection message does not name the file and field: %s", msg)
	}
	// Kubernetes ConfigMap style: the file is a symlink into a ..data dir that is swapped.
	n := ld.Total()
	eventually(t, 5*time.Second, "requests after the invalid reload", func() bool { return ld.Total() > n+100 })
	if ld.Failed() != 0 {
		t.Fatalf("across reloads: %s", ld)
	}
	if v0 == p.Version() {
		t.Fatal("version never changed")
	}
}

func TestReloadConfigMapSymlinkSwap(t *testing.T) {
	a, b, c := testserver.Start(t, "a"), testserver.Start(t, "b"), testserver.Start(t, "c")
	vars := map[string]string{"a": a.Addr, "b": b.Addr, "c": c.Addr}
	addr := testserver.FreeAddr(t)
	dir := t.TempDir()
	// dir/..2026_1/weft.yaml, dir/..data -> ..2026_1, dir/weft.yaml -> ..data/weft.yaml
	mk := func(name string, text string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "weft.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("..2026_1", expand(reloadConfig(addr, "a", 100), vars))
	if err := os.Symlink("..2026_1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weft.yaml")
	if err := os.Symlink("..data/weft.yaml", path); err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), Options{Logger: testLogger(t), DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	if err := p.LoadFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.WatchFile(ctx, path, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cl := &fasthttp.Client{}
	if _, body, _ := get(t, cl, "http://"+addr+"/"); body != "a" {
		t.Fatalf("before swap: %q", body)
	}
	// The kubelet's swap: new dir, new ..data_tmp link, renamed over ..data.
	mk("..2026_2", expand(reloadConfig(addr, "c", 100), vars))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..2026_2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the swapped config", func() bool {
		_, body, _ := get(t, cl, "http://"+addr+"/")
		return body == "c"
	})
}

// TestFirstApplyWithBusyPortFails: a first config whose listener cannot
// bind is refused with an error (not a panic), and nothing is left running.
func TestFirstApplyWithBusyPortFails(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	up := testserver.Start(t, "up")
	p, err := New(context.Background(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	raw := []byte(strings.Replace(expand(plainConfig, map[string]string{"up": up.Addr}), "127.0.0.1:0", busy.Addr().String(), 1))
	cfg, err := config.Parse("busy.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background(), cfg, raw, ""); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("apply on a busy port: %v", err)
	}
	if p.Ready() {
		t.Fatal("a refused first config left the proxy ready")
	}
}

// TestApplyWithOneBusyPortOfTwo: a config whose second listener cannot bind
// is refused promptly (the first, bound but never served, is released) and
// the proxy stays usable.
func TestApplyWithOneBusyPortOfTwo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	up := testserver.Start(t, "up")
	p, err := New(context.Background(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	two := strings.Replace(expand(plainConfig, map[string]string{"up": up.Addr}), "listeners:\n", `listeners:
  - name: second
    address: `+busy.Addr().String()+`
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
`, 1)
	// The busy listener comes second in the file order the proxy binds in.
	raw := []byte(strings.Replace(two, "  - name: second", "  - name: zz-second", 1))
	cfg, err := config.Parse("two.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listeners[0], cfg.Listeners[1] = cfg.Listeners[1], cfg.Listeners[0]
	done := make(chan error, 1)
	go func() { done <- p.Apply(context.Background(), cfg, raw, "") }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a config with a busy port was applied")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply hung on a busy second port")
	}
	if p.ListenerAddr("main") != nil {
		t.Fatal("a listener of the refused config is still bound")
	}
}

// TestReloadKeepsAClusterAndItsRetryBudget: an unchanged cluster survives
// a reload with its state, retry budget included, so retries in flight on
// the old snapshot stay counted.
func TestReloadKeepsAClusterAndItsRetryBudget(t *testing.T) {
	up := testserver.Start(t, "up")
	p, _ := startProxy(t, plainConfig, map[string]string{"up": up.Addr})
	snap := p.snap.Load()
	before := snap.byName["up"]
	raw := []byte(strings.Replace(expand(plainConfig, map[string]string{"up": up.Addr}), "max_body_bytes: 1024", "max_body_bytes: 2048", 1))
	cfg, err := config.Parse("again.yaml", raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background(), cfg, raw, ""); err != nil {
		t.Fatal(err)
	}
	if p.snap.Load() == snap {
		t.Fatal("the reload did not build a new snapshot")
	}
	after := p.snap.Load().byName["up"]
	if after.c != before.c || after.budget != before.budget {
		t.Fatal("an unchanged cluster lost its state or retry budget across a reload")
	}
}

// TestReloadLimits: per-request limits (body size, timeouts) change with a
// reload on a kept listener; limits fixed at bind time are refused with a
// reason instead of being ignored.
func TestReloadLimits(t *testing.T) {
	up := testserver.Start(t, "up")
	addr := testserver.FreeAddr(t)
	vars := map[string]string{"up": up.Addr}
	base := strings.Replace(expand(plainConfig, vars), "127.0.0.1:0", addr, 1)
	p, _ := startProxy(t, base, nil)
	post := func() int {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/")
		req.Header.SetMethod("POST")
		req.SetBody(make([]byte, 100))
		if err := (&fasthttp.Client{}).DoTimeout(req, resp, 5*time.Second); err != nil {
			return 0
		}
		return resp.StatusCode()
	}
	if st := post(); st != 200 {
		t.Fatalf("100-byte body under a 1024 limit: %d", st)
	}
	apply := func(text string) error {
		cfg, err := config.Parse("limits.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return p.Apply(context.Background(), cfg, []byte(text), "")
	}
	if err := apply(strings.Replace(base, "max_body_bytes: 1024", "max_body_bytes: 10", 1)); err != nil {
		t.Fatal(err)
	}
	if st := post(); st != 413 {
		t.Fatalf("100-byte body after lowering the limit to 10: %d, want 413", st)
	}
	err := apply(strings.Replace(base, "max_header_bytes: 4096", "max_header_bytes: 8192", 1))
	if err == nil || !strings.Contains(err.Error(), "max_header_bytes") {
		t.Fatalf("changing a bind-time limit: %v", err)
	}
}

// TestReloadWithBusyNeighbour: another file in the config's directory
// written without pause (an access log under load) neither holds back nor
// triggers a reload: each edit of the config applies while it is written.
// The time from an edit to the new version is logged, not asserted.
func TestReloadWithBusyNeighbour(t *testing.T) {
	a, b, c := testserver.Start(t, "a"), testserver.Start(t, "b"), testserver.Start(t, "c")
	vars := map[string]string{"a": a.Addr, "b": b.Addr, "c": c.Addr}
	addr := testserver.FreeAddr(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, expand(reloadConfig(addr, "a", 100), vars))
	p, err := New(context.Background(), Options{Logger: testLogger(t), DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	if err := p.LoadFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The watcher's default debounce (200 ms), as the sidecar runs it.
	if err := p.WatchFile(ctx, path, 0); err != nil {
		t.Fatal(err)
	}

	// The neighbour: appends lines without pause until the test ends (or a
	// bound, so a stuck test cannot fill the disk).
	log, err := os.Create(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	var writes atomic.Int64
	go func() {
		defer close(done)
		line := []byte(strings.Repeat("x", 100) + "\n")
		for i := 0; i < 5_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := log.Write(line); err != nil {
				return
			}
			writes.Add(1)
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = log.Close()
	})
	eventually(t, 5*time.Second, "the neighbour to be busy", func() bool { return writes.Load() > 1000 })

	cl := &fasthttp.Client{}
	for i, to := range []string{"c", "a", "c"} {
		v := p.Version()
		n := writes.Load()
		start := time.Now()
		writeConfig(t, dir, expand(reloadConfig(addr, to, 100-i), vars))
		eventually(t, 10*time.Second, fmt.Sprintf("edit %d to apply while the neighbour is written", i), func() bool { return p.Version() != v })
		took := time.Since(start)
		if _, body, _ := get(t, cl, "http://"+addr+"/"); body != to && body != "b" {
			t.Fatalf("edit %d: answered by %q, want %q", i, body, to)
		}
		t.Logf("edit %d applied in %v while the neighbour took %d writes", i, took.Round(time.Millisecond), writes.Load()-n)
	}
}

// TestReloadOnModuleEdit: the watcher tracks the Wasm modules the config
// names, in another directory too; a module whose bytes change is
// reloaded though the config file is untouched.
func TestReloadOnModuleEdit(t *testing.T) {
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm (wabt) is not installed: apt-get install -y wabt")
	}
	mods := t.TempDir()
	mod := filepath.Join(mods, "headers.wasm")
	if b, err := exec.Command(bin, filepath.Join("wasm", "testdata", "headers.wat"), "-o", mod).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm: %v\n%s", err, b)
	}
	up := testserver.Start(t, "up")
	addr := testserver.FreeAddr(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`
filters:
  - name: headers
    module: {path: %q}
listeners:
  - name: main
    address: %s
    filters: [headers]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: %q}]
`, mod, addr, up.Addr))
	p, err := New(context.Background(), Options{Logger: testLogger(t), DrainTimeout: time.Second, WasmCacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	if err := p.LoadFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := p.WatchFile(ctx, path, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	applied := func() float64 { v, _ := metricValue(t, p, "weft_config_reloads_total", "result", "applied"); return v }
	before := applied()
	// The same module with a custom section appended: new bytes, same code.
	b, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	tmp := mod + ".tmp"
	if err := os.WriteFile(tmp, append(b, 0, 6, 4, 'w', 'e', 'f', 't', 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, mod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the module edit to be applied", func() bool { return applied() > before })
	if _, _, h := get(t, &fasthttp.Client{}, "http://"+addr+"/"); h == nil || string(h.Peek("X-Resp")) != "on" {
		t.Fatal("the reloaded module does not serve")
	}
}

// TestReloadForgetsRemovedClusterMetrics: once a reload drops a cluster
// and requests on the old config have drained, its series leave
// /stats/prometheus; a kept cluster's stay.
func TestReloadForgetsRemovedClusterMetrics(t *testing.T) {
	up := testserver.Start(t, "up")
	two := `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: to-old
            match: {prefix: /old}
            route: {cluster: old}
          - name: to-kept
            match: {prefix: /}
            route: {cluster: kept}
clusters:
  - name: kept
    endpoints: [{address: "{{up}}"}]
  - name: old
    endpoints: [{address: "{{up}}"}]
`
	p, url := startProxy(t, two, map[string]string{"up": up.Addr})
	c := &fasthttp.Client{}
	for _, path := range []string{"/old", "/"} {
		if st, body, _ := get(t, c, url+path); st != 200 {
			t.Fatalf("%s: %d %s", path, st, body)
		}
	}
	series := func(cluster string) int {
		mfs, err := p.Metrics().Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "cluster" && l.GetValue() == cluster {
						n++
					}
				}
			}
		}
		return n
	}
	if series("old") == 0 || series("kept") == 0 {
		t.Fatalf("series before the reload: old %d, kept %d", series("old"), series("kept"))
	}
	raw := []byte(expand(strings.Replace(strings.Replace(two, "          - name: to-old\n            match: {prefix: /old}\n            route: {cluster: old}\n", "", 1),
		"  - name: old\n    endpoints: [{address: \"{{up}}\"}]\n", "", 1), map[string]string{"up": up.Addr}))
	cfg, err := config.Parse("one.yaml", raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	keptBefore := series("kept")
	if err := p.Apply(context.Background(), cfg, raw, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the removed cluster's series to go", func() bool { return series("old") == 0 })
	if got := series("kept"); got != keptBefore {
		t.Fatalf("the kept cluster has %d series, had %d", got, keptBefore)
	}
}
