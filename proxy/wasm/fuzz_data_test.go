package wasm

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
)

// fuzzTrace is a fixed trace context, so trace.* properties resolve.
type fuzzTrace struct{}

func (fuzzTrace) TraceID() []byte      { return []byte("0123456789abcdef0123456789abcdef") }
func (fuzzTrace) SpanID() []byte       { return []byte("0123456789abcdef") }
func (fuzzTrace) ParentSpanID() []byte { return nil }
func (fuzzTrace) Sampled() bool        { return true }

// fuzzStream is a stream with every piece of state a property can read:
// TLS, route, cluster, upstream, trace, node metadata, an attribute, and
// (in the response phase) a response.
func fuzzStream(response bool) *filter.Stream {
	s := newStream("/p/q?x=1", "X-In", "fuzz", "X-Request-Id", "abc")
	s.TLS = &filter.TLSInfo{MTLS: true, ServerName: "svc.local", PeerURISAN: "spiffe://td/ns/a/sa/b", PeerSubject: "CN=b"}
	s.RouteName, s.ClusterName, s.UpstreamAddr = "r1", "c1", "10.1.2.3:9090"
	s.ResponseFlags = "UH,LR"
	s.Trace = fuzzTrace{}
	s.NodeMetadata = map[string]string{"zone": "z1", "": "empty"}
	s.SetAttribute("my.attr", []byte("value-1"))
	s.Destination = &net.UnixAddr{Name: "/run/app.sock", Net: "unix"}
	if response {
		s.Response.SetStatusCode(503)
		s.Response.Header.Set("X-Resp", "r")
		s.Response.SetBodyString("body")
	}
	return s
}

// propertyRoots are the first segments of every path the host resolves
// (besides attributes a filter set).
var propertyRoots = map[string]bool{
	"plugin_name": true, "plugin_root_id": true, "plugin_vm_id": true, "node": true, "xds": true,
	"request": true, "response": true, "source": true, "destination": true, "connection": true,
	"upstream": true, "cluster_name": true, "route_name": true, "listener_direction": true,
	"listener_name": true, "trace": true,
}

// FuzzPropertyPath: arbitrary NUL-separated property paths against a
// stream with realistic state, in both phases. get_property answers OK or
// NotFound, paths outside the known roots (and not set as attributes)
// answer NotFound, a read is repeatable, and set_property then
// get_property of the same path gives back the value set.
func FuzzPropertyPath(f *testing.F) {
	for _, p := range []string{
		"request.path", "request.url_path", "request.query", "request.host", "request.scheme", "request.method",
		"request.headers", "request.headers.x-in", "request.headers.:path", "request.headers.host", "request.id",
		"request.protocol", "request.time", "request.size", "request.total_size", "request.referer", "request.useragent",
		"response.code", "response.code_details", "response.flags", "response.headers", "response.headers.x-resp",
		"response.size", "response.total_size", "source.address", "source.port", "destination.address",
		"destination.port", "connection.mtls", "connection.tls_version", "connection.requested_server_name",
		"connection.uri_san_peer_certificate", "source.principal", "connection.subject_peer_certificate",
		"connection.id", "upstream.address", "upstream.port", "cluster_name", "xds.cluster_name", "route_name",
		"listener_direction", "listener_name", "trace.trace_id", "trace.span_id", "trace.parent_span_id",
		"trace.sampled", "plugin_name", "plugin_root_id", "plugin_vm_id", "node", "node.id", "node.metadata",
		"node.metadata.zone", "node.metadata.", "xds.node.metadata", "my.attr", "nope", "",
	} {
		path := []byte(strings.ReplaceAll(p, ".", "\x00"))
		f.Add(false, path, []byte("v"))
		f.Add(true, path, []byte{})
	}
	f.Add(false, []byte("request\x00path\x00\x00"), []byte("v"))
	f.Add(true, []byte("\x00\x00"), []byte("v"))
	f.Add(false, []byte("request.headers\x00x-in"), []byte("\x00"))

	rt := newRuntime(f)
	p := load(f, rt, PluginSpec{Name: "props", RootID: "root-a", VMID: "vm-a", Module: wat(f, "noop")},
		Env{NodeID: "node-1", NodeMetadata: map[string]string{"zone": "z0"}})

	f.Fuzz(func(t *testing.T, response bool, path, val []byte) {
		if len(path) > 8192 || len(val) > 8192 {
			return
		}
		s := fuzzStream(response)
		h := newHostEnv(t, p, s)
		if response {
			h.f.phase = phaseResponse
		}
		pp, pn := h.put(path)
		get := func() ([]byte, uint32) {
			st := h.call("proxy_get_property", pp, pn, retPtr, retLen)
			if st != statusOK {
				return nil, st
			}
			return h.ret(), st
		}
		key := strings.ReplaceAll(strings.TrimRight(string(path), "\x00"), "\x00", ".")
		got, st := get()
		if st != statusOK && st != statusNotFound {
			t.Fatalf("get_property(%q): status %d", path, st)
		}
		root, _, _ := strings.Cut(key, ".")
		if _, attr := s.Attributes[key]; !propertyRoots[root] && !attr && st != statusNotFound {
			t.Fatalf("get_property(%q) of an unknown path: status %d, %q", path, st, got)
		}
		if key != "request.duration" {
			again, st2 := get()
			if st2 != st || !bytes.Equal(again, got) {
				t.Fatalf("get_property(%q) changed between reads: %q/%d then %q/%d", path, got, st, again, st2)
			}
		}

		vp, vn := h.put(val)
		st = h.call("proxy_set_property", pp, pn, vp, vn)
		if key == "" {
			if st != statusBadArgument {
				t.Fatalf("set_property(%q) of an empty path: status %d", path, st)
			}
			return
		}
		if st != statusOK {
			t.Fatalf("set_property(%q): status %d", path, st)
		}
		if back, st := get(); st != statusOK || !bytes.Equal(back, val) {
			t.Fatalf("set_property(%q, %q) reads back %q (status %d)", path, val, back, st)
		}
	})
}

// errUpstream fails every proxy_http_call at once: the fuzzer tests what
// the host decodes, not the network.
type errUpstream struct{}

func (errUpstream) Do(string, *fasthttp.Request, *fasthttp.Response, time.Duration) error {
	return errors.New("fuzz: no upstream")
}

// Where FuzzHostCallData puts the fuzzed bytes in guest memory (inside the
// WAT modules' free area, below fuzzNameAt).
const (
	fuzzDataAt  = 20000
	fuzzDataMax = fuzzNameAt - fuzzDataAt - 64
	fuzzAuxAt   = fuzzNameAt - 32 // "c", "d", "b": cluster, details, body
)

// FuzzHostCallData complements FuzzHostCalls: the pointers are right and
// the BYTES the host decodes are fuzzed: header maps passed to
// proxy_set_header_map_pairs, proxy_send_local_response and
// proxy_http_call, header names and values, property paths and buffer
// contents. Beyond not panicking and the plugin still working: a refused
// set_header_map_pairs leaves the map as it was (no half-applied write), a
// refused local response leaves none pending, and accepted maps carry
// exactly the pairs the guest serialized.
func FuzzHostCallData(f *testing.F) {
	m := func(kv ...string) []byte {
		var pairs [][2][]byte
		for i := 0; i+1 < len(kv); i += 2 {
			pairs = append(pairs, [2][]byte{[]byte(kv[i]), []byte(kv[i+1])})
		}
		return serializeMap(nil, pairs)
	}
	for op := uint8(0); op < dataOps; op++ {
		f.Add(op, uint32(0), m(":method", "GET", ":path", "/x", ":authority", "a", "x-a", "1"))
		f.Add(op|0x80, uint32(2), m(":status", "201", "x-b", "2"))
		f.Add(op, uint32(403), m("x-reason", "test"))
		f.Add(op, uint32(0), m("x-a", "1", ":bogus", "x"))
		f.Add(op|0x80, uint32(2), m("x-a", "1", ":status", "abc"))
		f.Add(op, uint32(0), []byte("request\x00headers\x00x-in"))
		f.Add(op, uint32(0), []byte("x-in\nfuzz"))
		f.Add(op, uint32(0x00020001), []byte("body bytes"))
		f.Add(op, uint32(0xffffffff), []byte{0xff, 0xff, 0xff, 0xff})
	}

	rt := newRuntime(f)
	p := load(f, rt, PluginSpec{Module: wat(f, "headers"), VMConfig: []byte("vm"), PluginConfig: []byte("plugin")},
		Env{Upstream: errUpstream{}})

	f.Fuzz(func(t *testing.T, op uint8, a uint32, data []byte) {
		if len(data) > fuzzDataMax {
			return
		}
		s := newStream("/fuzz", "X-In", "fuzz")
		s.Request.SetBodyString("request body")
		response := op&0x80 != 0
		if response {
			s.Response.SetStatusCode(200)
			s.Response.Header.Set("X-Resp", "r")
			s.Response.SetBodyString("response body")
		}
		sf := p.NewStreamFilter(s)
		if sf == nil {
			t.Fatal("no stream filter")
		}
		f := sf.(*streamFilter)
		v := f.v
		done := false
		defer func() {
			if !done {
				sf.OnDone(s) // a failed check must not leave the stream open
			}
		}()
		func() {
			v.mu.Lock()
			defer v.mu.Unlock()
			if response {
				f.phase = phaseResponse
			}
			v.mem.Write(fuzzDataAt, data)
			v.mem.Write(fuzzAuxAt, []byte("cdb"))
			v.cur = f
			defer func() { v.cur = nil }()
			dataOp(t, v, f, op&0x7f%dataOps, a, data)
		}()
		done = true
		sf.OnDone(s)

		s2 := newStream("/after", "X-In", "ok")
		o := runStream(p, s2)
		if o.req != filter.Continue || string(s2.Request.Header.Peek("X-Echo")) != "ok" {
			t.Fatalf("after op %d(%#x, %q): outcome %+v x-echo %q", op, a, data, o, s2.Request.Header.Peek("X-Echo"))
		}
	})
}

const dataOps = 9

// dataOp runs one host call on data (at fuzzDataAt) with v locked and the
// stream current, and checks what it can.
func dataOp(t *testing.T, v *vm, f *streamFilter, op uint8, a uint32, data []byte) {
	n := uint64(len(data))
	call := func(name string, args ...uint64) uint32 {
		for _, fn := range allABIFuncs() {
			if fn.name == name {
				st := make([]uint64, max(len(args), 1))
				copy(st, args)
				fn.fn(&v.ctx, v.mod, st)
				return uint32(st[0])
			}
		}
		t.Fatalf("no host function %s", name)
		return 0
	}
	// snapshot serializes map mt as the guest would read it.
	snapshot := func(mt uint32) []byte {
		h, ok := v.headerMap(mt)
		if !ok {
			return nil
		}
		return append(h.serialize(nil), f.s.Request.RequestURI()...)
	}
	split := bytes.IndexByte(data, '\n')
	if split < 0 {
		split = len(data)
	}
	key, kn := uint64(fuzzDataAt), uint64(split)
	val, vn := uint64(fuzzDataAt+split), uint64(len(data)-split)
	mt := uint64(a % mapTypeCount)

	switch op {
	case 0: // proxy_set_header_map_pairs
		before := snapshot(uint32(mt))
		st := call("proxy_set_header_map_pairs", mt, fuzzDataAt, n)
		if _, ok := parseMap(nil, data); !ok && st == statusOK {
			t.Fatalf("set_header_map_pairs accepted a malformed map %q", data)
		}
		if after := snapshot(uint32(mt)); st != statusOK && !bytes.Equal(before, after) {
			t.Fatalf("set_header_map_pairs(%d, %q) refused (status %d) but changed the map:\n%q\n->\n%q", mt, data, st, before, after)
		}
	case 1: // proxy_send_local_response
		st := call("proxy_send_local_response", uint64(a), fuzzAuxAt+1, 1, fuzzAuxAt+2, 1, fuzzDataAt, n, uint64(0xffffffff))
		pairs, ok := parseMap(nil, data)
		for _, kv := range pairs {
			ok = ok && checkPair(kv[0], kv[1], false) == nil // no CR, LF, NUL in a value, token names
		}
		switch {
		case st == statusOK:
			if !ok || a < 100 || a > 999 || f.local.status != int(a) || len(f.local.headers) != len(pairs) {
				t.Fatalf("local response %d %q accepted as %+v", a, data, f.local)
			}
			for i, kv := range pairs {
				if f.local.headers[i] != [2]string{string(kv[0]), string(kv[1])} {
					t.Fatalf("local response header %d = %q, want %q", i, f.local.headers[i], kv)
				}
			}
		case f.local.status != 0 || len(f.local.headers) != 0 || f.pending != outcomeNone:
			t.Fatalf("local response %d %q refused (status %d) but left %+v pending %d", a, data, st, f.local, f.pending)
		case ok && a >= 100 && a <= 999:
			t.Fatalf("local response %d %q refused: status %d", a, data, st)
		}
	case 2: // proxy_http_call
		st := call("proxy_http_call", fuzzAuxAt, 1, fuzzDataAt, n, fuzzAuxAt+2, 1, 0, 0, uint64(a%1000), retPtr)
		pairs, ok := parseMap(nil, data)
		if !ok {
			if st != statusParseFailure {
				t.Fatalf("http_call with malformed headers %q: status %d", data, st)
			}
			return
		}
		// Accepted exactly when the three pseudo-headers are there and
		// every pair is well formed (a :path starts with "/", an empty
		// :authority stands for the cluster's name).
		has := map[string]bool{}
		wellFormed := true
		for _, kv := range pairs {
			has[string(kv[0])] = true
			if !(string(kv[0]) == ":authority" && len(kv[1]) == 0) && checkPair(kv[0], kv[1], true) != nil {
				wellFormed = false
			}
		}
		if complete := has[":method"] && has[":path"] && has[":authority"]; (complete && wellFormed) != (st == statusOK) {
			t.Fatalf("http_call with headers %q: status %d", pairs, st)
		}
	case 3: // proxy_get_property
		if st := call("proxy_get_property", fuzzDataAt, n, retPtr, retLen); st != statusOK && st != statusNotFound {
			t.Fatalf("get_property(%q): status %d", data, st)
		}
	case 4: // proxy_set_property
		call("proxy_set_property", key, kn, val, vn)
	case 5: // proxy_set_buffer_bytes
		typ, start, length := uint64(a&0xf), uint64(a>>4&0xfff), uint64(a>>16)
		call("proxy_set_buffer_bytes", typ, start, length, fuzzDataAt, n)
	case 6: // proxy_add_header_map_value
		call("proxy_add_header_map_value", mt, key, kn, val, vn)
	case 7: // proxy_replace_header_map_value
		call("proxy_replace_header_map_value", mt, key, kn, val, vn)
	case 8: // proxy_remove_header_map_value, then get_header_map_value
		call("proxy_remove_header_map_value", mt, fuzzDataAt, n)
		if st := call("proxy_get_header_map_value", mt, fuzzDataAt, n, retPtr, retLen); st == statusOK && n > 0 && data[0] != ':' {
			t.Fatalf("header %q still present after remove_header_map_value on map %d", data, mt)
		}
	}
}
