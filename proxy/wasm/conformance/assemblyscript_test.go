package conformance_test

import (
	"testing"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/wasm"
)

// TestAssemblyScriptHeaders: a filter written with @solo-io/proxy-runtime
// (ABI 0.2.0, imports wasi_unstable, root context chosen by plugin_root_id)
// adds, echoes and removes request headers and adds a response header from
// its plugin configuration. Skipped when npm is not installed.
func TestAssemblyScriptHeaders(t *testing.T) {
	t.Parallel()
	module := guestbuild.AssemblyScript(t, "headers")
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{
		Module:       module,
		RootID:       "as_headers",
		PluginConfig: []byte("as-config-value"),
	}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	res := px.mustDo(t, request{Path: "/as", Header: [][2]string{{"X-As-Echo", "echo-me"}, {"X-Remove-Me", "x"}}})
	if res.Status != 200 || res.Upstream == nil {
		t.Fatalf("status %d, body %q", res.Status, res.Body)
	}
	if got := res.Upstream.Get("x-as-added"); got != "from-assemblyscript" {
		t.Errorf("upstream x-as-added %q", got)
	}
	if got := res.Upstream.Get("x-as-echoed"); got != "echo-me" {
		t.Errorf("upstream x-as-echoed %q, want echo-me", got)
	}
	if res.Upstream.Has("x-remove-me") {
		t.Error("upstream still got x-remove-me")
	}
	if got := res.Get("x-as-response"); got != "as-config-value" {
		t.Errorf("client x-as-response %q, want the plugin configuration as-config-value", got)
	}
}
