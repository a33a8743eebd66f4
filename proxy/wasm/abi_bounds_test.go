package wasm

import (
	"fmt"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
)

// TestReturnPointersAtTheEndOfMemory: a host function stores its result's
// pointer and length at addresses the guest gives; one that ends exactly
// at the end of guest memory is fine, one byte further is refused.
func TestReturnPointersAtTheEndOfMemory(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Name: "bounds", Module: wat(t, "noop")}, Env{})
	h := newHostEnv(t, p, newStream("/x"))
	size := uint64(h.v.mem.Size())
	path, n := h.put([]byte("plugin_name"))
	for _, tc := range []struct {
		name           string
		retPtr, retLen uint64
		want           uint32
	}{
		{"both inside", retPtr, retLen, statusOK},
		{"length slot ends at the end", retPtr, size - 4, statusOK},
		{"pointer slot ends at the end", size - 4, retLen, statusOK},
		{"length slot one byte out", retPtr, size - 3, statusInvalidMemoryAccess},
		{"pointer slot one byte out", size - 3, retLen, statusInvalidMemoryAccess},
		{"pointer slot past the end", size, retLen, statusInvalidMemoryAccess},
		{"pointer slot far out", 1<<32 - 1, retLen, statusInvalidMemoryAccess},
	} {
		if st := h.call("proxy_get_property", path, n, tc.retPtr, tc.retLen); st != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, st, tc.want)
			continue
		}
		if tc.want != statusOK {
			continue
		}
		ptr, _ := h.v.mem.ReadUint32Le(uint32(tc.retPtr))
		l, _ := h.v.mem.ReadUint32Le(uint32(tc.retLen))
		if got, _ := h.v.mem.Read(ptr, l); string(got) != "bounds" {
			t.Errorf("%s: result %q, want %q", tc.name, got, "bounds")
		}
	}
}

// TestBufferSlices: get_buffer_bytes returns [start, start+max) clamped to
// the buffer; set_buffer_bytes writes the response body only once there is
// one (the response phase).
func TestBufferSlices(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/")
	s.Request.SetBodyString("abcdefg")
	h := newHostEnv(t, p, s)
	for _, tc := range []struct {
		start, max uint64
		want       string
		status     uint32
	}{
		{0, 3, "abc", statusOK},
		{2, 3, "cde", statusOK},
		{5, 100, "fg", statusOK},
		{6, 1, "g", statusOK},
		{7, 1, "", statusNotFound},
		{3, 0, "", statusNotFound},
		{8, 1, "", statusBadArgument},
	} {
		st := h.call("proxy_get_buffer_bytes", bufferRequestBody, tc.start, tc.max, retPtr, retLen)
		if st != tc.status || (st == statusOK && string(h.ret()) != tc.want) {
			t.Errorf("get [%d, +%d): status %d, want %d %q", tc.start, tc.max, st, tc.status, tc.want)
		}
	}

	dp, dn := h.put([]byte("NEW"))
	h.f.phase = phaseRequest
	if st := h.call("proxy_set_buffer_bytes", bufferResponseBody, 0, 0xffffffff, dp, dn); st != statusNotFound {
		t.Errorf("set the response body before the response: status %d, want NotFound", st)
	}
	s.Response.SetBodyString("old body")
	h.f.phase = phaseResponse
	if st := h.call("proxy_set_buffer_bytes", bufferResponseBody, 4, 4, dp, dn); st != statusOK || string(s.Response.Body()) != "old NEW" {
		t.Errorf("set response body [4, 8): status %d, body %q, want \"old NEW\"", st, s.Response.Body())
	}
	if st := h.call("proxy_set_buffer_bytes", bufferHTTPCallBody, 0, 0, dp, dn); st != statusBadArgument {
		t.Errorf("set a read-only buffer: status %d, want BadArgument", st)
	}
}

// pairsOf reads a header map the way a guest does.
func pairsOf(t *testing.T, h *hostEnv, mt uint64) (map[string]string, uint32) {
	t.Helper()
	st := h.call("proxy_get_header_map_pairs", mt, retPtr, retLen)
	if st != statusOK {
		return nil, st
	}
	got := map[string]string{}
	b := h.ret()
	pairs, ok := parseMap(nil, b)
	if !ok {
		t.Fatalf("map %d: unparsable %q", mt, b)
	}
	for _, kv := range pairs {
		got[string(kv[0])] = string(kv[1])
	}
	return got, st
}

// TestTrailerMaps: a stream's trailer maps exist in its context: empty
// for a message without trailers (every HTTP/1.1 one), with no :status.
func TestTrailerMaps(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/")
	h := newHostEnv(t, p, s)
	for _, mt := range []uint64{mapRequestTrailers, mapResponseTrailers} {
		if got, st := pairsOf(t, h, mt); st != statusOK || len(got) != 0 {
			t.Errorf("map %d without trailers: %v, status %d; want an empty map", mt, got, st)
		}
	}
	s.RequestTrailers, s.ResponseTrailers = new(fasthttp.ResponseHeader), new(fasthttp.ResponseHeader)
	s.RequestTrailers.SetNoDefaultContentType(true) // as the HTTP/2 codec makes them
	s.ResponseTrailers.SetNoDefaultContentType(true)
	s.RequestTrailers.Set("X-Req-Sum", "1")
	s.ResponseTrailers.Set("Grpc-Status", "0")
	for mt, want := range map[uint64]string{mapRequestTrailers: "x-req-sum", mapResponseTrailers: "grpc-status"} {
		got, st := pairsOf(t, h, mt)
		if st != statusOK || len(got) != 1 || got[want] == "" {
			t.Errorf("map %d: %v, status %d; want just %s", mt, got, st, want)
		}
	}
}

// TestHTTPCallMaps: an http_call's answer is readable as maps only while
// its callback runs: its headers (with :status) and an empty trailer map.
func TestHTTPCallMaps(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	h := newHostEnv(t, p, newStream("/"))
	for _, mt := range []uint64{mapHTTPCallHeaders, mapHTTPCallTrailers} {
		if _, st := pairsOf(t, h, mt); st != statusNotFound {
			t.Errorf("map %d with no call answered: status %d, want NotFound", mt, st)
		}
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.SetStatusCode(201)
	resp.Header.SetNoDefaultContentType(true)
	resp.Header.Set("X-Up", "1")
	h.v.callResp = resp // as during on_http_call_response
	defer func() { h.v.callResp = nil }()
	if got, st := pairsOf(t, h, mapHTTPCallHeaders); st != statusOK || got[":status"] != "201" || got["x-up"] != "1" {
		t.Errorf("call headers: %v, status %d", got, st)
	}
	if got, st := pairsOf(t, h, mapHTTPCallTrailers); st != statusOK || len(got) != 0 {
		t.Errorf("call trailers: %v, status %d; want an empty map", got, st)
	}
}

// TestStatusPseudoHeaderRange: :status takes a three-digit code, 100 to
// 999, whether written alone or in a whole map; anything else is refused
// and leaves the status as it was.
func TestStatusPseudoHeaderRange(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/")
	h := newHostEnv(t, p, s)
	h.f.phase = phaseResponse
	kp, kn := h.put([]byte(":status"))
	for _, tc := range []struct {
		code string
		ok   bool
	}{{"99", false}, {"100", true}, {"999", true}, {"1000", false}, {"20x", false}} {
		want := uint32(statusBadArgument)
		if tc.ok {
			want = statusOK
		}
		s.Response.SetStatusCode(200)
		vp, vn := h.put([]byte(tc.code))
		st := h.call("proxy_replace_header_map_value", mapResponseHeaders, kp, kn, vp, vn)
		if st != want || (tc.ok && fmt.Sprint(s.Response.StatusCode()) != tc.code) || (!tc.ok && s.Response.StatusCode() != 200) {
			t.Errorf("replace :status %s: status %d, response %d", tc.code, st, s.Response.StatusCode())
		}
		s.Response.SetStatusCode(200)
		s.Response.Header.Set("X-Kept", "1")
		mp, mn := h.put(serializeMap(nil, [][2][]byte{{[]byte(":status"), []byte(tc.code)}, {[]byte("x-new"), []byte("n")}}))
		st = h.call("proxy_set_header_map_pairs", mapResponseHeaders, mp, mn)
		kept := string(s.Response.Header.Peek("X-Kept")) == "1"
		if st != want || (tc.ok && (fmt.Sprint(s.Response.StatusCode()) != tc.code || kept)) || (!tc.ok && (s.Response.StatusCode() != 200 || !kept)) {
			t.Errorf("set_header_map_pairs with :status %s: status %d, response %d, old header kept %v", tc.code, st, s.Response.StatusCode(), kept)
		}
	}
}

// TestHeaderNamesEdgeCases: an empty name is no pseudo-header (and no
// crash), a request without Host has no "host", set_header_map_pairs
// keeps the Host when the new map has no :authority, and names reach the
// guest in lower case.
func TestHeaderNamesEdgeCases(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/", "Zone-A", "1")
	h := newHostEnv(t, p, s)
	empty, _ := h.put([]byte("x"))
	vp, vn := h.put([]byte("v"))
	if st := h.call("proxy_get_header_map_value", mapRequestHeaders, empty, 0, retPtr, retLen); st != statusNotFound {
		t.Errorf("get an empty name: status %d, want NotFound", st)
	}
	// An empty name is not an RFC 9110 token: the write is refused
	// (BadArgument) and counted, as every malformed header write is.
	for _, fn := range []string{"proxy_add_header_map_value", "proxy_replace_header_map_value"} {
		if st := h.call(fn, mapRequestHeaders, empty, 0, vp, vn); st != statusBadArgument {
			t.Errorf("%s with an empty name: status %d, want BadArgument", fn, st)
		}
	}
	if st := h.call("proxy_remove_header_map_value", mapRequestHeaders, empty, 0); st != statusOK {
		t.Errorf("remove an empty name: status %d", st)
	}

	got, _ := pairsOf(t, h, mapRequestHeaders)
	if got["zone-a"] != "1" {
		t.Errorf("header names not in lower case: %v", got)
	}

	// Replacing the whole map without :authority keeps the Host.
	mp, mn := h.put(serializeMap(nil, [][2][]byte{{[]byte("x-only"), []byte("1")}}))
	if st := h.call("proxy_set_header_map_pairs", mapRequestHeaders, mp, mn); st != statusOK {
		t.Fatalf("set_header_map_pairs: %d", st)
	}
	if got, _ := pairsOf(t, h, mapRequestHeaders); got[":authority"] != "svc.local" || got["x-only"] != "1" || got["zone-a"] != "" {
		t.Errorf("after set_header_map_pairs: %v", got)
	}
	hk, hn := h.put([]byte("host"))
	if st := h.call("proxy_get_header_map_value", mapRequestHeaders, hk, hn, retPtr, retLen); st != statusOK || string(h.ret()) != "svc.local" {
		t.Errorf("host: status %d", st)
	}
	noHost := newHostEnv(t, p, newStream("/"))
	noHost.s.Request.Header.SetHost("")
	noHost.s.Request.URI().SetHost("")
	hk, hn = noHost.put([]byte("host"))
	if st := noHost.call("proxy_get_header_map_value", mapRequestHeaders, hk, hn, retPtr, retLen); st != statusNotFound {
		t.Errorf("host of a request without one: status %d, want NotFound", st)
	}
}

func TestOriginFormEdges(t *testing.T) {
	for in, want := range map[string]string{
		"http://?q=1":     "/?q=1",
		"https://h?q":     "/?q",
		"http:///p":       "/p",
		"HTTP://h/p?x":    "/p?x",
		"http://h":        "/",
		"/already/origin": "/already/origin",
		"http://":         "http://",
	} {
		if got := string(originForm([]byte(in))); got != want {
			t.Errorf("originForm(%q) = %q, want %q", in, got, want)
		}
	}
}

// strAddr is a net.Addr of another kind than TCP or UDP.
type strAddr string

func (a strAddr) Network() string { return "test" }
func (a strAddr) String() string  { return string(a) }

// TestSplitAddr: an address property has its port whatever the kind of
// net.Addr (the port is parsed from the text when the type does not say).
func TestSplitAddr(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		s    string
		port int64
		ok   bool
	}{
		{nil, "", 0, false},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80}, "10.0.0.1:80", 80, true},
		{&net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 53}, "10.0.0.2:53", 53, true},
		{strAddr("10.0.0.3:8443"), "10.0.0.3:8443", 8443, true},
		{strAddr("[::1]:9"), "[::1]:9", 9, true},
		{strAddr("/run/weft.sock"), "/run/weft.sock", 0, true},
	} {
		s, port, ok := splitAddr(tc.a)
		if s != tc.s || port != tc.port || ok != tc.ok {
			t.Errorf("splitAddr(%v) = %q, %d, %v; want %q, %d, %v", tc.a, s, port, ok, tc.s, tc.port, tc.ok)
		}
	}
}

// rootCall runs a host function from the root context (no stream).
func (h *hostEnv) rootCall(name string, args ...uint64) uint32 {
	h.t.Helper()
	fn := h.funcs[name]
	st := make([]uint64, max(len(args), 1))
	copy(st, args)
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	h.v.cur = nil
	fn.fn(&h.v.ctx, h.v.mod, st)
	return uint32(st[0])
}

// TestRequestAndResponseProperties: the properties that depend on the
// phase or on what the request carries.
func TestRequestAndResponseProperties(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/p/q?x=1&y=2")
	s.Request.SetBodyString("body!")
	h := newHostEnv(t, p, s)
	str := func(path string) (string, uint32) {
		b, st := h.property(path)
		return string(b), st
	}
	if got, _ := str("request.query"); got != "x=1&y=2" {
		t.Errorf("request.query = %q", got)
	}
	if got, _ := str("request.url_path"); got != "/p/q" {
		t.Errorf("request.url_path = %q", got)
	}
	s.Request.SetRequestURI("/noquery")
	if got, st := str("request.query"); got != "" || st != statusOK {
		t.Errorf("request.query without one = %q (status %d)", got, st)
	}
	size, _ := h.property("request.size")
	total, _ := h.property("request.total_size")
	if le64(size) != 5 || le64(total) != 5+int64(len(s.Request.Header.RawHeaders())) {
		t.Errorf("request.size %d, total_size %d (raw headers %d)", le64(size), le64(total), len(s.Request.Header.RawHeaders()))
	}

	// request.id: the stream's, else the header's, else none.
	s.ID = []byte("from-stream")
	if got, _ := str("request.id"); got != "from-stream" {
		t.Errorf("request.id = %q", got)
	}
	s.ID = nil
	s.Request.Header.Set("X-Request-Id", "from-header")
	if got, _ := str("request.id"); got != "from-header" {
		t.Errorf("request.id from the header = %q", got)
	}
	s.Request.Header.Del("X-Request-Id")
	if _, st := str("request.id"); st != statusNotFound {
		t.Errorf("request.id with none: status %d, want NotFound", st)
	}

	// Response properties exist from the response phase on.
	s.Response.SetStatusCode(503)
	s.Response.SetBodyString("unavailable")
	for _, path := range []string{"response.code", "response.code_details", "response.headers", "response.size", "response.total_size"} {
		if _, st := h.property(path); st != statusNotFound {
			t.Errorf("%s in the request phase: status %d, want NotFound", path, st)
		}
	}
	h.f.phase = phaseResponse
	if got, _ := str("response.code_details"); got != "via_upstream" {
		t.Errorf("response.code_details = %q, want via_upstream", got)
	}
	s.ResponseFlags = "UH,LR"
	if got, _ := str("response.code_details"); got != "local_reply" {
		t.Errorf("response.code_details of a local reply = %q", got)
	}
	h.f.details = "wasm_fail_closed"
	if got, _ := str("response.code_details"); got != "wasm_fail_closed" {
		t.Errorf("response.code_details set by the host = %q", got)
	}
	if got, _ := h.property("response.size"); le64(got) != int64(len("unavailable")) {
		t.Errorf("response.size = %d", le64(got))
	}
	if got, st := h.property("response.headers"); st != statusOK {
		t.Errorf("response.headers: status %d", st)
	} else if pairs, ok := parseMap(nil, got); !ok || len(pairs) == 0 || string(pairs[0][0]) != ":status" || string(pairs[0][1]) != "503" {
		t.Errorf("response.headers = %q", got)
	}
}

// TestRootContextAttributes: set_property outside a stream keeps the
// value in the root context's own map, which streams do not see.
func TestRootContextAttributes(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	h := newHostEnv(t, p, newStream("/"))
	kp, kn := h.put([]byte("my\x00root"))
	vp, vn := h.put([]byte("root-value"))
	if st := h.rootCall("proxy_get_property", kp, kn, retPtr, retLen); st != statusNotFound {
		t.Errorf("unset root attribute: status %d", st)
	}
	if st := h.rootCall("proxy_set_property", kp, kn, vp, vn); st != statusOK {
		t.Fatalf("set in the root context: %d", st)
	}
	if st := h.rootCall("proxy_get_property", kp, kn, retPtr, retLen); st != statusOK || string(h.ret()) != "root-value" {
		t.Errorf("root attribute read back: status %d", st)
	}
	if _, st := h.property("my.root"); st != statusNotFound {
		t.Errorf("a stream sees the root context's attribute: status %d", st)
	}
}

// parentTrace is a trace context continued from a parent span.
type parentTrace struct{ fuzzTrace }

func (parentTrace) ParentSpanID() []byte { return []byte("fedcba9876543210") }

// TestConnectionTraceAndNodeProperties: properties that exist only when
// the stream has what they describe, and the node as the stream (or else
// the plugin's environment) names it.
func TestConnectionTraceAndNodeProperties(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{NodeID: "env-node", NodeMetadata: map[string]string{"zone": "env"}})
	s := newStream("/")
	s.Response.Header.Set("X-Up", "1") // there, but not readable before the response phase
	h := newHostEnv(t, p, s)
	str := func(path string) (string, uint32) {
		b, st := h.property(path)
		return string(b), st
	}
	for _, path := range []string{"connection.tls_version", "connection.subject_peer_certificate", "trace.trace_id", "trace.sampled", "response.headers.x-up"} {
		if _, st := str(path); st != statusNotFound {
			t.Errorf("%s on a plain stream with no trace, in the request phase: status %d, want NotFound", path, st)
		}
	}
	if got, _ := str("request.headers.:scheme"); got != "http" {
		t.Errorf("request.headers.:scheme = %q, want http", got)
	}
	if got, _ := str("node.id"); got != "env-node" {
		t.Errorf("node.id = %q, want the environment's", got)
	}
	if got, _ := str("node.metadata.zone"); got != "env" {
		t.Errorf("node.metadata.zone = %q, want the environment's", got)
	}

	s.TLS = &filter.TLSInfo{}
	if _, st := str("connection.tls_version"); st != statusOK {
		t.Errorf("connection.tls_version over TLS: status %d", st)
	}
	if _, st := str("connection.subject_peer_certificate"); st != statusNotFound {
		t.Errorf("subject of a peer without a certificate: status %d, want NotFound", st)
	}
	s.TLS.PeerSubject = "CN=peer"
	if got, _ := str("connection.subject_peer_certificate"); got != "CN=peer" {
		t.Errorf("connection.subject_peer_certificate = %q", got)
	}
	if got, _ := str("request.headers.:scheme"); got != "https" {
		t.Errorf("request.headers.:scheme over TLS = %q", got)
	}
	if b, _ := h.property("request.headers"); true {
		pairs, _ := parseMap(nil, b)
		scheme := ""
		for _, kv := range pairs {
			if string(kv[0]) == ":scheme" {
				scheme = string(kv[1])
			}
		}
		if scheme != "https" {
			t.Errorf("request.headers map over TLS has :scheme %q", scheme)
		}
	}

	s.Trace = fuzzTrace{}
	if got, _ := str("trace.trace_id"); got != "0123456789abcdef0123456789abcdef" {
		t.Errorf("trace.trace_id = %q", got)
	}
	if _, st := str("trace.parent_span_id"); st != statusNotFound {
		t.Errorf("trace.parent_span_id of a trace started here: status %d, want NotFound", st)
	}
	s.Trace = parentTrace{}
	if got, _ := str("trace.parent_span_id"); got != "fedcba9876543210" {
		t.Errorf("trace.parent_span_id = %q", got)
	}

	s.NodeID, s.NodeMetadata = "stream-node", map[string]string{"zone": "stream"}
	if got, _ := str("node.id"); got != "stream-node" {
		t.Errorf("node.id = %q, want the stream's", got)
	}
	if got, _ := str("node.metadata.zone"); got != "stream" {
		t.Errorf("node.metadata.zone = %q, want the stream's", got)
	}

	s.Response.SetBodyString("0123")
	h.f.phase = phaseResponse
	if got, _ := str("response.headers.x-up"); got != "1" {
		t.Errorf("response.headers.x-up = %q", got)
	}
	if got, _ := h.property("response.total_size"); le64(got) != int64(len(s.Response.Header.Header())+4) {
		t.Errorf("response.total_size = %d, want headers %d + body 4", le64(got), len(s.Response.Header.Header()))
	}
}
