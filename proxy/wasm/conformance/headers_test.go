package conformance_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/wasm"
)

// TestHeaders: the guest adds, removes and replaces request headers and
// rewrites :path; the upstream sees exactly that. It edits the upstream's
// response headers; the client sees the result.
func TestHeaders(t *testing.T) {
	t.Parallel()
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "headers")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	res := px.mustDo(t, request{
		Method: "PUT",
		Path:   "/items/7?color=blue",
		Host:   "shop.test:8080",
		Header: [][2]string{
			{"X-Remove-Me", "please"},
			{"X-Replace-Me", "original"},
			{"X-Keep", "kept"},
		},
	})

	if res.Status != 200 {
		t.Fatalf("status %d, body %q", res.Status, res.Body)
	}
	u := res.Upstream
	if u == nil {
		t.Fatal("the upstream never saw the request")
	}
	if u.URI != "/rewritten/items/7?color=blue" {
		t.Errorf("upstream request URI %q, want the guest's :path /rewritten/items/7?color=blue", u.URI)
	}
	if u.Method != "PUT" {
		t.Errorf("upstream method %q, want PUT", u.Method)
	}
	if u.Host != "shop.test:8080" {
		t.Errorf("upstream Host %q, want the client's shop.test:8080", u.Host)
	}
	for name, want := range map[string]string{
		"x-weft-added":     "request-side",
		"x-replace-me":     "replaced",
		"x-keep":           "kept",
		"x-seen-method":    "PUT",
		"x-seen-authority": "shop.test:8080",
		"x-seen-path":      "/items/7?color=blue",
	} {
		if got := u.Header[name]; len(got) != 1 || got[0] != want {
			t.Errorf("upstream header %s = %q, want exactly [%q]", name, got, want)
		}
	}
	if u.Has("x-remove-me") {
		t.Errorf("upstream still got x-remove-me: %q", u.Get("x-remove-me"))
	}
	for _, pseudo := range []string{":path", ":method", ":authority", ":scheme"} {
		if u.Has(pseudo) {
			t.Errorf("pseudo-header %s leaked to the upstream as a header", pseudo)
		}
	}

	for name, want := range map[string]string{
		"x-weft-response":    "response-side",
		"x-seen-status":      "200",
		"x-upstream-version": "v2",
		"content-type":       "text/plain",
	} {
		if got := res.Header[name]; len(got) != 1 || got[0] != want {
			t.Errorf("client header %s = %q, want exactly [%q]", name, got, want)
		}
	}
	if res.Has("x-upstream-secret") {
		t.Error("client still got x-upstream-secret, which the guest removed")
	}
	if res.Body != "hello from upstream at /rewritten/items/7" {
		t.Errorf("client body %q: the upstream's body should pass untouched", res.Body)
	}
	if res.Trace.RequestHeaders != filter.Continue || res.Trace.ResponseHeaders != filter.Continue {
		t.Errorf("statuses %+v, want Continue", res.Trace)
	}
	// proxy_add_header_map_value adds a value; it never overwrites.
	if got := u.Header["x-multi"]; !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("upstream x-multi %q, want [a b]", got)
	}
	if got := res.Header["x-multi"]; !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("client x-multi %q, want [1 2]", got)
	}
}

// TestHeaderMapPairs: the guest reads the whole request map
// (proxy_get_header_map_pairs, pseudo-headers included) and writes it back
// changed (proxy_set_header_map_pairs): dropped headers are gone, the new
// :path applies, everything else survives.
func TestHeaderMapPairs(t *testing.T) {
	t.Parallel()
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "headers")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	res := px.mustDo(t, request{
		Method: "POST",
		Path:   "/p?q=1",
		Host:   "pairs.test",
		Body:   "payload",
		Header: [][2]string{{"X-Replace-All", "1"}, {"X-Drop-One", "1"}, {"X-Drop-Two", "2"}, {"X-Stay", "s1"}, {"X-Stay", "s2"}},
	})
	u := res.Upstream
	if res.Status != 200 || u == nil {
		t.Fatalf("status %d, body %q", res.Status, res.Body)
	}
	if u.URI != "/pairs/p?q=1" || u.Method != "POST" || u.Host != "pairs.test" {
		t.Errorf("upstream request line %s %s Host %s, want POST /pairs/p?q=1 Host pairs.test", u.Method, u.URI, u.Host)
	}
	if u.Has("x-drop-one") || u.Has("x-drop-two") {
		t.Errorf("dropped headers reached the upstream: %v", u.Header)
	}
	if got := u.Header["x-stay"]; !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("upstream x-stay %q, want [s1 s2]", got)
	}
	if u.Get("x-set-by-pairs") != "yes" || u.Get("x-replace-all") != "1" || u.Get(idHeader) != res.ID {
		t.Errorf("upstream headers %v lack the guest's or the client's headers", u.Header)
	}
	if u.Body != "payload" || u.ContentLength != len("payload") {
		t.Errorf("upstream body %q (Content-Length %d), want the client's payload", u.Body, u.ContentLength)
	}
}

// TestGuestLogs: proxy_log reaches the Runtime's zap logger at the guest's
// level.
func TestGuestLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	// A Runtime of its own (for the observed logger), sharing the suite's
	// compilation cache so the Go guest is not compiled again.
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeOptions{CacheDir: compileCacheDir(), Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plugin, err := rt.Load(ctx, wasm.PluginSpec{Name: unique("logs"), VMID: unique("vm"), Module: goGuest(t, "headers"), PoolSize: 1, CallbackTimeout: callbackTimeout}, wasm.Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer plugin.Close()
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, wasm.Env{})
	px.mustDo(t, request{Path: "/logged", Header: [][2]string{{"X-Log", "1"}}})

	var found []string
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "headers guest saw") {
				found = append(found, fmt.Sprintf("%s %q", e.Level, s))
				if s != "headers guest saw /logged" || e.Level != zap.WarnLevel {
					t.Errorf("guest log entry %s %q, want warn %q", e.Level, s, "headers guest saw /logged")
				}
			}
		}
	}
	if len(found) != 1 {
		t.Errorf("guest log entries %v, want exactly one", found)
	}
}
