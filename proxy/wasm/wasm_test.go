package wasm

import (
	"context"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/filter"
)

func TestHeaderFilter(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	s := newStream("/orig?q=1", "X-In", "hello", "X-Drop", "gone")
	o := runStream(p, s)
	if o.req != filter.Continue || !o.upstream {
		t.Fatalf("outcome %+v", o)
	}
	h := &s.Request.Header
	if got := string(h.Peek("X-Wasm")); got != "on" {
		t.Errorf("x-wasm = %q", got)
	}
	if got := string(h.Peek("X-Echo")); got != "hello" {
		t.Errorf("x-echo = %q", got)
	}
	if got := string(s.Request.RequestURI()); got != "/rewritten" {
		t.Errorf(":path = %q", got)
	}
	if h.Peek("X-Drop") != nil {
		t.Errorf("x-drop still there")
	}
	if got := string(s.Response.Header.Peek("X-Resp")); got != "on" {
		t.Errorf("x-resp = %q", got)
	}
	if string(s.Response.Body()) != "upstream" {
		t.Errorf("body %q", s.Response.Body())
	}
}

func TestLoadRefusesBadABI(t *testing.T) {
	rt := newRuntime(t)
	for name, want := range map[string]string{"noabi": "no proxy_abi_version", "abi999": "9_9_9"} {
		_, err := rt.Load(context.Background(), PluginSpec{Name: name, Module: wat(t, name), PoolSize: 1}, Env{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, want)
		}
	}
}

func TestLinksEverySDKImport(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "imports"), PluginConfig: []byte("cfg")}, Env{})
	if p.abi != abi010 {
		t.Errorf("abi = %v", p.abi)
	}
	s := newStream("/")
	if o := runStream(p, s); !o.upstream || o.req != filter.Continue {
		t.Errorf("0.1.0 guest: %+v", o)
	}
}

// TestTrustedPluginRunsAndKeepsItsOwnEngine: a trusted plugin works like
// any other, and does not share a wazero runtime with deadline-bound ones
// (the termination checks are a runtime-wide setting).
func TestTrustedPluginRunsAndKeepsItsOwnEngine(t *testing.T) {
	rt := newRuntime(t)
	code := wat(t, "headers")
	trusted := load(t, rt, PluginSpec{Name: "t", Module: code, Trusted: true}, Env{})
	bounded := load(t, rt, PluginSpec{Name: "b", Module: code}, Env{})
	for _, p := range []*Plugin{trusted, bounded} {
		s := newStream("/x")
		f := p.NewStreamFilter(s)
		if f.OnRequestHeaders(s, true) != filter.Continue {
			t.Fatalf("%s: not continue", p.Name())
		}
		f.OnDone(s)
		if len(s.Request.Header.Peek("X-Wasm")) == 0 {
			t.Fatalf("%s: filter did not run", p.Name())
		}
	}
	if trusted.engine == bounded.engine {
		t.Fatal("trusted and deadline-bound plugins share a wazero runtime")
	}
	if trusted.Key() == bounded.Key() {
		t.Fatal("trust is not part of the plugin key")
	}
}
