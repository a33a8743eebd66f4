package wasm

import (
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
)

// Host functions and properties that no other test called (issue 21):
// proxy_get_buffer_status, proxy_close_stream, proxy_continue_request,
// proxy_clear_route_cache, proxy_done and the "node" property.

func TestGetBufferStatus(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop"), VMConfig: []byte("vm-cfg"), PluginConfig: []byte("plugin-config")}, Env{})
	s := newStream("/")
	s.Request.SetBodyString("hello")
	h := newHostEnv(t, p, s)

	const lenPtr, flagsPtr = 40100, 40104
	for _, tc := range []struct {
		name       string
		bufferType uint64
		phase      uint8
		lenAt      uint64
		status     uint32
		length     uint32
	}{
		{"request body", bufferRequestBody, phaseRequest, lenPtr, statusOK, 5},
		{"plugin config", bufferPluginConfig, phaseRequest, lenPtr, statusOK, uint32(len("plugin-config"))},
		{"vm config", bufferVMConfiguration, phaseRequest, lenPtr, statusOK, uint32(len("vm-cfg"))},
		// The response body does not exist before the response phase.
		{"response body too early", bufferResponseBody, phaseRequest, lenPtr, statusNotFound, 0},
		{"no http call", bufferHTTPCallBody, phaseRequest, lenPtr, statusNotFound, 0},
		{"unknown type", 99, phaseRequest, lenPtr, statusNotFound, 0},
		{"length outside memory", bufferRequestBody, phaseRequest, 1 << 31, statusInvalidMemoryAccess, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.f.phase = tc.phase
			// Poison both results, so a host that writes nothing is seen.
			h.v.mem.WriteUint32Le(lenPtr, 0xdeadbeef)
			h.v.mem.WriteUint32Le(flagsPtr, 0xdeadbeef)
			if st := h.call("proxy_get_buffer_status", tc.bufferType, tc.lenAt, flagsPtr); st != tc.status {
				t.Fatalf("status %d, want %d", st, tc.status)
			}
			if tc.status != statusOK {
				return
			}
			n, _ := h.v.mem.ReadUint32Le(lenPtr)
			flags, _ := h.v.mem.ReadUint32Le(flagsPtr)
			if n != tc.length || flags != 0 {
				t.Fatalf("length %d flags %#x, want %d and 0", n, flags, tc.length)
			}
		})
	}
	// In the response phase the response body has a status too.
	s.Response.SetBodyString("0123456789")
	h.f.phase = phaseResponse
	if st := h.call("proxy_get_buffer_status", bufferResponseBody, lenPtr, flagsPtr); st != statusOK {
		t.Fatalf("response body: status %d", st)
	}
	if n, _ := h.v.mem.ReadUint32Le(lenPtr); n != 10 {
		t.Fatalf("response body length %d, want 10", n)
	}
}

// TestNodeProperty: "node" (and Envoy's "xds.node") is the node as a map:
// its id and each metadata entry under "metadata."; "node.metadata" (and
// "xds.node.metadata") is the metadata alone as a map.
func TestNodeProperty(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")},
		Env{NodeID: "node-1", NodeMetadata: map[string]string{"zone": "z1", "app": "shop"}})
	h := newHostEnv(t, p, newStream("/"))
	node := [][2]string{{"id", "node-1"}, {"metadata.app", "shop"}, {"metadata.zone", "z1"}}
	metadata := [][2]string{{"app", "shop"}, {"zone", "z1"}}
	for path, want := range map[string][][2]string{"node": node, "xds.node": node, "node.metadata": metadata, "xds.node.metadata": metadata} {
		got, st := h.property(path)
		if st != statusOK {
			t.Fatalf("%s: status %d", path, st)
		}
		pairs, ok := parseMap(nil, got)
		if !ok || len(pairs) != len(want) {
			t.Fatalf("%s = %q, want the map %v", path, got, want)
		}
		for i, kv := range pairs {
			if string(kv[0]) != want[i][0] || string(kv[1]) != want[i][1] {
				t.Errorf("%s entry %d = %s: %s, want %s: %s", path, i, kv[0], kv[1], want[i][0], want[i][1])
			}
		}
	}
}

// TestResumeWithOlderStreamCalls runs the resume01 guest: a paused request
// is resumed by proxy_continue_request or ended by proxy_close_stream from
// the tick, a paused response is resumed by proxy_continue_response, and
// proxy_clear_route_cache and proxy_done answer OK (the guest traps
// otherwise, which fails the stream).
func TestResumeWithOlderStreamCalls(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "resume01")}, Env{})
	// A guest that never resumes fails after this instead of 30s.
	p.pauseTimeout = 5 * time.Second

	s := newStream("/")
	o := runStream(p, s)
	if o.req != filter.Continue || !o.upstream || s.Response.StatusCode() != 200 {
		t.Fatalf("continue_request: outcome %+v, status %d %q; want the request resumed to the upstream",
			o, s.Response.StatusCode(), s.Response.Body())
	}
	if o.resp != filter.Continue || string(s.Response.Body()) != "upstream" {
		t.Fatalf("continue_response: outcome %+v, status %d %q; want the upstream's response resumed",
			o, s.Response.StatusCode(), s.Response.Body())
	}

	s = newStream("/", "X-Close", "1")
	o = runStream(p, s)
	if o.req != filter.LocalReply || o.upstream {
		t.Fatalf("close_stream: outcome %+v, want the stream ended before the upstream", o)
	}
	if s.Response.StatusCode() != failStatus || string(s.Response.Header.Peek("Connection")) != "close" || s.ResponseFlags != "LR" {
		t.Fatalf("close_stream: %d, Connection %q, flags %q; want %d, close, LR",
			s.Response.StatusCode(), s.Response.Header.Peek("Connection"), s.ResponseFlags, failStatus)
	}

	// The VM is healthy: neither stream trapped (in on_done either).
	s = newStream("/")
	if o := runStream(p, s); o.req != filter.Continue || !o.upstream {
		t.Fatalf("third stream: outcome %+v; did the guest trap?", o)
	}
}
