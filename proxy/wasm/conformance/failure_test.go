package conformance_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestConfigurationReachesTheGuest: VM and plugin configurations arrive in
// on_vm_start and on_configure (proxy_get_buffer_bytes), and a guest that
// refuses either makes Load fail.
func TestConfigurationReachesTheGuest(t *testing.T) {
	t.Parallel()
	module := goGuest(t, "failure")
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: module, VMConfig: []byte("vm-cfg"), PluginConfig: []byte("plugin-cfg")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)
	res := px.mustDo(t, request{})
	if res.Upstream == nil {
		t.Fatalf("status %d, body %q", res.Status, res.Body)
	}
	if got := res.Upstream.Get("x-vm-config"); got != "vm-cfg" {
		t.Errorf("guest's VM configuration %q, want vm-cfg", got)
	}
	if got := res.Upstream.Get("x-plugin-config"); got != "plugin-cfg" {
		t.Errorf("guest's plugin configuration %q, want plugin-cfg", got)
	}

	for _, tc := range []struct {
		name string
		spec wasm.PluginSpec
	}{
		{"on_vm_start returns false", wasm.PluginSpec{VMConfig: []byte("reject-vm")}},
		{"on_configure returns false", wasm.PluginSpec{PluginConfig: []byte("reject")}},
	} {
		spec := tc.spec
		spec.Name, spec.VMID, spec.Module, spec.PoolSize = unique("refused"), unique("vm"), module, 2
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		p, err := runtime(t).Load(ctx, spec, env)
		cancel()
		if err == nil {
			p.Close()
			t.Errorf("%s: Load succeeded, want an error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

// TestFailClosed: a guest that traps fails its stream closed (a 503 local
// reply, nothing sent upstream); the broken VM is replaced, later streams
// are filtered again; the trap and the decision are counted per plugin.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	name := unique("failclosed")
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Name: name, Module: goGuest(t, "failure"), PoolSize: 1}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	res := px.mustDo(t, request{Path: "/boom", Header: [][2]string{{"X-Panic", "1"}}})
	if res.Status != 503 {
		t.Errorf("a trapping filter answered %d, want 503 (fail closed)", res.Status)
	}
	if res.Upstream != nil {
		t.Error("the upstream saw a request whose filter trapped (fail closed)")
	}

	eventually(t, 30*time.Second, "a replaced VM filters again", func() (bool, string) {
		res, err := px.do(request{Path: "/after"})
		if err != nil {
			return false, err.Error()
		}
		ok := res.Status == 200 && res.Upstream != nil && res.Upstream.Get("x-filtered") == "yes"
		return ok, fmt.Sprintf("status %d", res.Status)
	})
	events := hostEvents(t, name)
	if events["trap"] != 1 {
		t.Errorf("trap events = %v, want 1 (all: %v)", events["trap"], events)
	}
	if events["fail_closed"] < 1 || events["fail_open"] != 0 {
		t.Errorf("failure-policy events %v, want fail_closed >= 1 and no fail_open", events)
	}
}

// TestFailOpen: with fail_open, a trap skips the filter: the request goes
// upstream unfiltered and the client gets the upstream's answer.
func TestFailOpen(t *testing.T) {
	t.Parallel()
	name := unique("failopen")
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Name: name, Module: goGuest(t, "failure"), PoolSize: 1, FailOpen: true}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	res := px.mustDo(t, request{Path: "/boom", Header: [][2]string{{"X-Panic", "1"}}})
	if res.Status != 200 || res.Upstream == nil {
		t.Fatalf("fail open: status %d, upstream saw it: %v; want the upstream's 200", res.Status, res.Upstream != nil)
	}
	if res.Upstream.Has("x-filtered") {
		t.Error("the trapping filter's edits reached the upstream")
	}
	if res.Body != "hello from upstream at /boom" {
		t.Errorf("client body %q", res.Body)
	}
	eventually(t, 30*time.Second, "a replaced VM filters again", func() (bool, string) {
		res, err := px.do(request{Path: "/after"})
		if err != nil {
			return false, err.Error()
		}
		return res.Upstream != nil && res.Upstream.Get("x-filtered") == "yes", fmt.Sprintf("status %d", res.Status)
	})
	events := hostEvents(t, name)
	if events["trap"] != 1 || events["fail_open"] < 1 || events["fail_closed"] != 0 {
		t.Errorf("events %v, want trap 1, fail_open >= 1, fail_closed 0", events)
	}
}

// hostEvents gathers the Runtime's host event counters of one plugin.
func hostEvents(t *testing.T, plugin string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(runtime(t).Collector()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] == plugin && labels["event"] != "" && m.GetCounter() != nil {
				out[labels["event"]] = m.GetCounter().GetValue()
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no host event counters exported for plugin %s", plugin)
	}
	return out
}
