package conformance_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestSharedVM: plugins that share VMs (same vm_id, module, VM config and
// limits) run in one VM, each with its own root context: the guest's
// globals count one on_vm_start, every live root and the streams of all of
// them; each root keeps its own plugin config, plugin_name and ticks. A
// plugin that fails to configure does not join; one that leaves ends only
// its own root; a plugin that does not share gets its own VM.
// The guest is written three times, with the public Go SDK, in C and with
// Weft's own Go SDK (sdk/), and all are held to the same assertions.
func TestSharedVM(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{"go", "c", "weft"} {
		t.Run(lang, func(t *testing.T) { testSharedVM(t, guestIn(t, lang, "sharedvm")) })
	}
}

func testSharedVM(t *testing.T, mod []byte) {
	vmID := unique("vm-sharedvm")
	spec := func(name, cfg string) wasm.PluginSpec {
		return wasm.PluginSpec{Name: unique(name), Module: mod, VMID: vmID, PoolSize: 1, ShareVMs: true, PluginConfig: []byte(cfg)}
	}
	sa, sb := spec("a", "a,tick"), spec("b", "b,tick")
	pa := loadPlugin(t, sa, wasm.Env{})
	pb := loadPlugin(t, sb, wasm.Env{})
	up := startBackend(t, nil)
	xa := startProxy(t, pa, up, wasm.Env{})
	xb := startProxy(t, pb, up, wasm.Env{})

	want := func(res *result, name string, kv ...string) {
		t.Helper()
		if res.Upstream == nil {
			t.Fatalf("%s: status %d, nothing reached the upstream", name, res.Status)
		}
		for i := 0; i < len(kv); i += 2 {
			if got := res.Upstream.Get("x-" + name + "-" + kv[i]); got != kv[i+1] {
				t.Errorf("%s: x-%s-%s = %q, want %q", name, name, kv[i], got, kv[i+1])
			}
		}
	}
	want(xa.mustDo(t, request{}), "a", "root", "1", "plugin-name", sa.Name, "vm-starts", "1", "roots", "2", "streams", "1")
	want(xb.mustDo(t, request{}), "b", "root", "2", "plugin-name", sb.Name, "vm-starts", "1", "roots", "2", "streams", "2")

	// Each root ticks on its own.
	for _, c := range []struct {
		x    *proxy
		name string
	}{{xa, "a"}, {xb, "b"}} {
		eventually(t, 20*time.Second, c.name+"'s root ticks", func() (bool, string) {
			res := c.x.mustDo(t, request{})
			got := res.Upstream.Get("x-" + c.name + "-ticks")
			return got != "" && got != "0", "ticks " + got
		})
	}

	// A plugin the guest refuses does not join and disturbs nobody.
	bad := spec("bad", "")
	bad.CallbackTimeout = callbackTimeout
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if p, err := runtime(t).Load(ctx, bad, wasm.Env{}); err == nil {
		p.Close()
		t.Fatal("a plugin whose on_configure fails joined the shared VM")
	}

	// A third plugin joins the running VM: no new on_vm_start, a root id
	// of its own (past every context id the VM gave out, as Envoy's one
	// counter per VM does); when b leaves, a and c stay.
	sc := spec("c", "c")
	pc := loadPlugin(t, sc, wasm.Env{})
	xc := startProxy(t, pc, up, wasm.Env{})
	res := xc.mustDo(t, request{})
	want(res, "c", "plugin-name", sc.Name, "vm-starts", "1", "roots", "3")
	cRoot := res.Upstream.Get("x-c-root")
	if n, err := strconv.Atoi(cRoot); err != nil || n <= 2 {
		t.Errorf("c's root id %q, want one above a's and b's", cRoot)
	}
	pb.Close()
	eventually(t, 20*time.Second, "b's root ended", func() (bool, string) {
		res := xa.mustDo(t, request{})
		return res.Upstream.Get("x-a-roots") == "2", "roots " + res.Upstream.Get("x-a-roots")
	})
	want(xc.mustDo(t, request{}), "c", "root", cRoot, "vm-starts", "1", "roots", "2")

	// The same module and vm_id without sharing: a VM of its own.
	alone := spec("alone", "alone")
	alone.ShareVMs = false
	xl := startProxy(t, loadPlugin(t, alone, wasm.Env{}), up, wasm.Env{})
	want(xl.mustDo(t, request{}), "alone", "root", "1", "vm-starts", "1", "roots", "1", "streams", "1")
}
