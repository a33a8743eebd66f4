package proxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

// startProxy applies yamlText (with {{name}} placeholders replaced from
// vars) to a new proxy and returns it with its first listener's URL.
func startProxy(t testing.TB, yamlText string, vars map[string]string) (*Proxy, string) {
	t.Helper()
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
	raw := []byte(expand(yamlText, vars))
	cfg, err := config.Parse("test.yaml", raw)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	if err := p.Apply(context.Background(), cfg, raw, ""); err != nil {
		t.Fatal(err)
	}
	return p, "http://" + p.ListenerAddr(cfg.Listeners[0].Name).String()
}

func testLogger(t testing.TB) *zap.Logger {
	if os.Getenv("WEFT_TEST_LOG") != "" {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

// writeConfig writes a config file for reload tests.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "weft.yaml")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // rename-and-replace, like editors
		t.Fatal(err)
	}
	return path
}

// get sends one request and returns status, body and the response headers.
func get(t testing.TB, c *fasthttp.Client, url string, hdrs ...string) (int, string, *fasthttp.ResponseHeader) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Set(hdrs[i], hdrs[i+1])
	}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, err.Error(), nil
	}
	h := &fasthttp.ResponseHeader{}
	resp.Header.CopyTo(h)
	return resp.StatusCode(), string(resp.Body()), h
}

// eventually polls cond every 20ms for at most max.
func eventually(t *testing.T, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newModuleProxy makes a proxy with no config yet, sharing the tests'
// compile cache and keeping OCI modules in moduleCache; tryApply gives it
// one.
func newModuleProxy(t testing.TB, moduleCache string) *Proxy {
	t.Helper()
	p, err := New(context.Background(), Options{Logger: testLogger(t), WasmCacheDir: guestbuild.CompileCacheDir(t), ModuleCacheDir: moduleCache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

// tryApply applies yamlText (placeholders replaced from vars) to p and
// returns Apply's answer; a config that does not parse fails the test.
func tryApply(t testing.TB, p *Proxy, yamlText string, vars map[string]string) error {
	t.Helper()
	raw := []byte(expand(yamlText, vars))
	cfg, err := config.Parse("test.yaml", raw)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	return p.Apply(context.Background(), cfg, raw, "")
}
