package wasm

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
)

// Guest memory the host-level tests use (the WAT modules have 2 pages; their
// heaps start at 64 KiB).
const (
	testArea = 16384
	retPtr   = 40000
	retLen   = 40004
)

// hostEnv is a stream context on a plugin's VM for calling host functions
// directly.
type hostEnv struct {
	t     *testing.T
	v     *vm
	f     *streamFilter
	s     *filter.Stream
	funcs map[string]abiFunc
	next  uint32
}

func newHostEnv(t *testing.T, p *Plugin, s *filter.Stream) *hostEnv {
	t.Helper()
	sf := p.NewStreamFilter(s).(*streamFilter)
	t.Cleanup(func() { sf.OnDone(s) })
	h := &hostEnv{t: t, v: sf.v, f: sf, s: s, funcs: map[string]abiFunc{}, next: testArea}
	for _, fn := range allABIFuncs() {
		h.funcs[fn.name] = fn
	}
	return h
}

// put writes b into guest memory and returns its pointer and length.
func (h *hostEnv) put(b []byte) (uint64, uint64) {
	p := h.next
	if !h.v.mem.Write(p, b) {
		h.t.Fatal("put: out of memory")
	}
	h.next += uint32(len(b)) + 8
	return uint64(p), uint64(len(b))
}

// call runs host function name from the stream context.
func (h *hostEnv) call(name string, args ...uint64) uint32 {
	h.t.Helper()
	fn, ok := h.funcs[name]
	if !ok {
		h.t.Fatalf("no host function %s", name)
	}
	st := make([]uint64, max(len(args), 1))
	copy(st, args)
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	h.v.cur = h.f
	fn.fn(&h.v.ctx, h.v.mod, st)
	h.v.cur = nil
	return uint32(st[0])
}

// ret reads the (ptr, len) result the host stored at retPtr/retLen.
func (h *hostEnv) ret() []byte {
	ptr, _ := h.v.mem.ReadUint32Le(retPtr)
	n, _ := h.v.mem.ReadUint32Le(retLen)
	b, ok := h.v.mem.Read(ptr, n)
	if !ok {
		h.t.Fatalf("result out of bounds: %d+%d", ptr, n)
	}
	return append([]byte(nil), b...)
}

func (h *hostEnv) property(path string) ([]byte, uint32) {
	p, n := h.put([]byte(strings.ReplaceAll(path, ".", "\x00")))
	st := h.call("proxy_get_property", p, n, retPtr, retLen)
	if st != statusOK {
		return nil, st
	}
	return h.ret(), st
}

func le64(b []byte) int64 {
	if len(b) != 8 {
		return -1
	}
	return int64(binary.LittleEndian.Uint64(b))
}

func TestProperties(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Name: "props", RootID: "root-a", VMID: "vm-a", Module: wat(t, "noop")},
		Env{NodeID: "node-1", NodeMetadata: map[string]string{"zone": "z1"}})
	s := newStream("/p/q?x=1", "X-Request-Id", "abc")
	s.TLS = &filter.TLSInfo{MTLS: true, ServerName: "svc.local", PeerURISAN: "spiffe://td/ns/a/sa/b"}
	s.RouteName, s.ClusterName, s.UpstreamAddr = "r1", "c1", "10.1.2.3:9090"
	s.StartTime = time.Unix(100, 5)
	h := newHostEnv(t, p, s)

	str := map[string]string{
		"request.path": "/p/q?x=1", "request.url_path": "/p/q", "request.host": "svc.local",
		"request.scheme": "https", "request.method": "GET", "request.id": "req-1", "request.protocol": "HTTP/1.1",
		"source.address": "10.0.0.1:40000", "destination.address": "127.0.0.1:8080",
		"connection.requested_server_name": "svc.local", "connection.uri_san_peer_certificate": "spiffe://td/ns/a/sa/b",
		"upstream.address": "10.1.2.3:9090", "plugin_name": "props", "plugin_root_id": "root-a", "plugin_vm_id": "vm-a",
		"node.id": "node-1", "node.metadata.zone": "z1", "cluster_name": "c1", "route_name": "r1",
		"request.headers.x-request-id": "abc",
	}
	for path, want := range str {
		got, st := h.property(path)
		if st != statusOK || string(got) != want {
			t.Errorf("%s = %q (status %d), want %q", path, got, st, want)
		}
	}
	ints := map[string]int64{
		"source.port": 40000, "destination.port": 8080, "upstream.port": 9090, "connection.id": 7,
		"request.time": time.Unix(100, 5).UnixNano(), "listener_direction": 1, "request.size": 0,
	}
	for path, want := range ints {
		got, st := h.property(path)
		if st != statusOK || le64(got) != want {
			t.Errorf("%s = %v (status %d), want %d", path, got, st, want)
		}
	}
	if got, _ := h.property("connection.mtls"); len(got) != 1 || got[0] != 1 {
		t.Errorf("connection.mtls = %v", got)
	}
	if got, _ := h.property("request.duration"); le64(got) <= 0 {
		t.Errorf("request.duration = %v", got)
	}
	if got, _ := h.property("request.headers"); true {
		pairs, ok := parseMap(nil, got)
		if !ok || len(pairs) < 5 || string(pairs[0][0]) != ":method" {
			t.Errorf("request.headers = %q", got)
		}
	}
	for _, path := range []string{"no.such.thing", "response.code", "node.metadata.nope"} {
		if _, st := h.property(path); st != statusNotFound {
			t.Errorf("%s: status %d, want NotFound", path, st)
		}
	}
	// set_property lands in Stream.Attributes and reads back.
	kp, kn := h.put([]byte("my\x00attr"))
	vp, vn := h.put([]byte("value-1"))
	if st := h.call("proxy_set_property", kp, kn, vp, vn); st != statusOK {
		t.Fatalf("set_property: %d", st)
	}
	if got := string(s.Attributes["my.attr"]); got != "value-1" {
		t.Errorf("Stream.Attributes[my.attr] = %q", got)
	}
	if got, _ := h.property("my.attr"); string(got) != "value-1" {
		t.Errorf("get my.attr = %q", got)
	}
	// Response properties appear in the response phase.
	s.Response.SetStatusCode(502)
	s.ResponseFlags = "UH"
	h.f.phase = phaseResponse
	if got, _ := h.property("response.code"); le64(got) != 502 {
		t.Errorf("response.code = %v", got)
	}
	if got, _ := h.property("response.flags"); le64(got) != 0x2 {
		t.Errorf("response.flags = %v", got)
	}
}

func TestHeaderMapPairs(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop")}, Env{})
	s := newStream("/a?b=c", "X-Mixed-Case", "1", "X-Two", "2")
	h := newHostEnv(t, p, s)
	if st := h.call("proxy_get_header_map_pairs", mapRequestHeaders, retPtr, retLen); st != statusOK {
		t.Fatalf("get pairs: %d", st)
	}
	pairs, ok := parseMap(nil, h.ret())
	if !ok {
		t.Fatal("unparsable map")
	}
	got := map[string]string{}
	for _, kv := range pairs {
		got[string(kv[0])] = string(kv[1])
	}
	want := map[string]string{":method": "GET", ":path": "/a?b=c", ":authority": "svc.local", ":scheme": "http", "x-mixed-case": "1", "x-two": "2"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (map %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["host"]; ok {
		t.Errorf("host must be :authority only")
	}
	// Replace the whole map: new method, path, authority and headers.
	m := serializeMap(nil, [][2][]byte{
		{[]byte(":method"), []byte("POST")}, {[]byte(":path"), []byte("/new")},
		{[]byte(":authority"), []byte("other.local")}, {[]byte("x-new"), []byte("n")},
	})
	mp, mn := h.put(m)
	if st := h.call("proxy_set_header_map_pairs", mapRequestHeaders, mp, mn); st != statusOK {
		t.Fatalf("set pairs: %d", st)
	}
	r := s.Request
	if string(r.Header.Method()) != "POST" || string(r.RequestURI()) != "/new" || string(r.Host()) != "other.local" {
		t.Errorf("request line %s %s host %s", r.Header.Method(), r.RequestURI(), r.Host())
	}
	if r.Header.Peek("X-Two") != nil || string(r.Header.Peek("X-New")) != "n" {
		t.Errorf("headers after set_pairs: %s", r.Header.String())
	}
	// A malformed map is a parse failure, not a panic.
	bp, _ := h.put([]byte{9, 0, 0, 0, 1})
	if st := h.call("proxy_set_header_map_pairs", mapRequestHeaders, bp, 5); st != statusParseFailure {
		t.Errorf("malformed map: %d", st)
	}
	// :status on the response.
	h.f.phase = phaseResponse
	s.Response.SetStatusCode(200)
	kp, kn := h.put([]byte(":status"))
	vp, vn := h.put([]byte("418"))
	if st := h.call("proxy_replace_header_map_value", mapResponseHeaders, kp, kn, vp, vn); st != statusOK || s.Response.StatusCode() != 418 {
		t.Errorf(":status write: %d -> %d", st, s.Response.StatusCode())
	}
}

func TestBodies(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "noop"), MaxBodyBytes: 16}, Env{})
	s := newStream("/")
	s.Request.SetBodyString("hello world")
	h := newHostEnv(t, p, s)
	if st := h.call("proxy_get_buffer_bytes", bufferRequestBody, 6, 100, retPtr, retLen); st != statusOK || string(h.ret()) != "world" {
		t.Errorf("get body[6:]: %d %q", st, h.ret())
	}
	dp, dn := h.put([]byte("HELLO"))
	if st := h.call("proxy_set_buffer_bytes", bufferRequestBody, 0, 5, dp, dn); st != statusOK || string(s.Request.Body()) != "HELLO world" {
		t.Errorf("replace prefix: %d %q", st, s.Request.Body())
	}
	ap, an := h.put([]byte("!"))
	if h.call("proxy_set_buffer_bytes", bufferRequestBody, 0xffffffff, 0, ap, an); string(s.Request.Body()) != "HELLO world!" {
		t.Errorf("append: %q", s.Request.Body())
	}
	if h.call("proxy_set_buffer_bytes", bufferRequestBody, 0, 0xffffffff, dp, dn); string(s.Request.Body()) != "HELLO" {
		t.Errorf("replace all: %q", s.Request.Body())
	}
	if st := h.call("proxy_get_buffer_bytes", bufferPluginConfig, 0, 10, retPtr, retLen); st != statusNotFound {
		t.Errorf("empty plugin config: %d", st)
	}

	// Bodies over MaxBodyBytes: 413 for requests, 500 for responses.
	big := newStream("/")
	big.Request.SetBodyString(strings.Repeat("x", 17))
	if o := runStream(p, big); o.req != filter.LocalReply || big.Response.StatusCode() != 413 || o.upstream {
		t.Errorf("large request body: %+v %d", o, big.Response.StatusCode())
	}
	s2 := newStream("/")
	f := p.NewStreamFilter(s2)
	f.OnRequestHeaders(s2, true)
	s2.Response.SetBodyString(strings.Repeat("y", 17))
	f.OnResponseHeaders(s2, false)
	if st := f.OnResponseBody(s2, true); st != filter.LocalReply || s2.Response.StatusCode() != 500 {
		t.Errorf("large response body: %v %d", st, s2.Response.StatusCode())
	}
	f.OnLog(s2)
	f.OnDone(s2)
}

func TestSharedQueueAndMetrics(t *testing.T) {
	rt := newRuntime(t)
	owner := load(t, rt, PluginSpec{Name: "owner", Module: wat(t, "queue"), VMID: "jobs-vm"}, Env{})
	producer := load(t, rt, PluginSpec{Name: "producer", Module: wat(t, "noop"), VMID: "other"}, Env{})
	if owner.Name() != "owner" {
		t.Fatal(owner.Name())
	}
	h := newHostEnv(t, producer, newStream("/"))
	vp, vn := h.put([]byte("jobs-vm"))
	np, nn := h.put([]byte("jobs"))
	if st := h.call("proxy_resolve_shared_queue", vp, vn, np, nn, retPtr); st != statusOK {
		t.Fatalf("resolve: %d", st)
	}
	id, _ := h.v.mem.ReadUint32Le(retPtr)
	ip, in := h.put([]byte("job-1"))
	if st := h.call("proxy_enqueue_shared_queue", uint64(id), ip, in); st != statusOK {
		t.Fatalf("enqueue: %d", st)
	}
	if !waitFor(func() bool {
		v, _, ok := rt.shared.get("jobs-vm", []byte("last"), nil)
		return ok && string(v) == "job-1"
	}) {
		t.Fatal("on_queue_ready did not dequeue the item")
	}
	if st := h.call("proxy_dequeue_shared_queue", uint64(id), retPtr, retLen); st != statusEmpty {
		t.Errorf("dequeue of a drained queue: %d", st)
	}
	// The guest's counter and host-defined gauge/histogram reach the Collector.
	gp, gn := h.put([]byte("depth"))
	h.call("proxy_define_metric", metricGauge, gp, gn, retPtr)
	gid, _ := h.v.mem.ReadUint32Le(retPtr)
	h.call("proxy_record_metric", uint64(gid), 42)
	hp, hn := h.put([]byte("latency"))
	h.call("proxy_define_metric", metricHistogram, hp, hn, retPtr)
	hid, _ := h.v.mem.ReadUint32Le(retPtr)
	h.call("proxy_record_metric", uint64(hid), 3)
	if st := h.call("proxy_get_metric", uint64(gid), retPtr); st != statusOK {
		t.Errorf("get_metric: %d", st)
	}
	if v, _ := h.v.mem.ReadUint64Le(retPtr); v != 42 {
		t.Errorf("gauge = %d", v)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(rt.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	find := func(family, plugin, name string) *dto.Metric {
		for _, mf := range mfs {
			if mf.GetName() != family {
				continue
			}
			for _, m := range mf.GetMetric() {
				var pl, nm string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "plugin":
						pl = l.GetValue()
					case "name", "event":
						nm = l.GetValue()
					}
				}
				if pl == plugin && nm == name {
					return m
				}
			}
		}
		return nil
	}
	if m := find("weft_wasm_guest_counter_total", "owner", "jobs_seen"); m == nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("jobs_seen counter: %v", m)
	}
	if m := find("weft_wasm_guest_gauge", "producer", "depth"); m == nil || m.GetGauge().GetValue() != 42 {
		t.Errorf("depth gauge: %v", m)
	}
	if m := find("weft_wasm_guest_histogram", "producer", "latency"); m == nil || m.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("latency histogram: %v", m)
	}
	if m := find("weft_wasm_events_total", "owner", "trap"); m == nil {
		t.Errorf("no event counters for owner")
	}
}

func TestOriginForm(t *testing.T) {
	for in, want := range map[string]string{
		"/a?b=1":                  "/a?b=1",
		"http://h.example/a?b=1":  "/a?b=1",
		"HTTPS://h.example:8443/": "/",
		"http://h.example":        "/",
		"http://h.example?q=1":    "/?q=1",
		"*":                       "*",
	} {
		if got := string(originForm([]byte(in))); got != want {
			t.Errorf("originForm(%q) = %q, want %q", in, got, want)
		}
	}
}

// count, which every header callback passes the guest, is the number of
// pairs the guest then reads from the map, whatever the map holds.
func TestHeaderCountMatchesPairs(t *testing.T) {
	s := newStream("/a?b=c", "X-One", "1", "Cookie", "a=b", "X-Dup", "1", "X-Dup", "2")
	s.Request.Header.SetContentType("text/plain")
	s.Request.Header.SetUserAgent("test")
	noHost := newStream("/")
	noHost.Request.Header.Del("Host")
	resp := &fasthttp.ResponseHeader{}
	resp.SetStatusCode(404)
	resp.Add("X-R", "1")
	resp.SetContentType("text/html")
	resp.Add("Set-Cookie", "a=b")
	trailers := &fasthttp.ResponseHeader{}
	trailers.DisableNormalizing()
	trailers.Add("grpc-status", "0")
	trailers.Add("grpc-message", "ok")
	for name, h := range map[string]headers{
		"request":         {req: &s.Request.Header, fullReq: s.Request},
		"request no host": {req: &noHost.Request.Header, fullReq: noHost.Request},
		"https request":   {req: &s.Request.Header, fullReq: s.Request, https: true},
		"response":        {resp: resp},
		"empty response":  {resp: &fasthttp.ResponseHeader{}},
		"trailers":        {resp: trailers, trailer: true},
		"no trailers":     {empty: true},
		"call failure":    {failure: []byte("timeout")},
	} {
		n := 0
		for range h.all() {
			n++
		}
		if got := h.count(); got != n || n == 0 && !h.empty {
			t.Errorf("%s: count() = %d, all() yields %d", name, got, n)
		}
	}
}
