package wasm

import (
	"bytes"
	"encoding/binary"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
)

// propertyFuncs: proxy_get_property, proxy_set_property.
func propertyFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_get_property", host(proxyGetProperty), params(4)},
		{"proxy_set_property", host(proxySetProperty), params(4)},
	}
}

// propertyKey turns a NUL-separated path into a dotted key, in v's buffer.
func (v *vm) propertyKey(path []byte) []byte {
	k := append(v.propBuf[:0], path...)
	for len(k) > 0 && k[len(k)-1] == 0 {
		k = k[:len(k)-1]
	}
	for i, c := range k {
		if c == 0 {
			k[i] = '.'
		}
	}
	v.propBuf = k
	return k
}

// proxy_get_property(path_ptr, path_len, ret_ptr_ptr, ret_len_ptr)
func proxyGetProperty(v *vm, st []uint64) uint32 {
	path, ok := v.read(uint32(st[0]), uint32(st[1]))
	if !ok || !v.writable(uint32(st[2]), 4) || !v.writable(uint32(st[3]), 4) {
		return statusInvalidMemoryAccess
	}
	if val, found, handled := v.metadataProperty(path, v.scratch[:0]); handled {
		v.scratch = val[:0]
		if !found {
			return statusNotFound
		}
		return v.copyOut(val, uint32(st[2]), uint32(st[3]))
	}
	key := v.propertyKey(path)
	val, found := v.property(key, v.scratch[:0])
	v.scratch = val[:0]
	if !found {
		return statusNotFound
	}
	return v.copyOut(val, uint32(st[2]), uint32(st[3]))
}

// proxy_set_property(path_ptr, path_len, val_ptr, val_len): stored in
// Stream.Attributes (or the root context's own map), read back by
// get_property.
func proxySetProperty(v *vm, st []uint64) uint32 {
	path, ok1 := v.read(uint32(st[0]), uint32(st[1]))
	val, ok2 := v.read(uint32(st[2]), uint32(st[3]))
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	key := v.propertyKey(path)
	if len(key) == 0 || !v.settable(key) {
		return statusBadArgument
	}
	cp := append([]byte(nil), val...)
	if f := v.cur; f != nil {
		f.s.SetAttribute(string(key), cp)
		return statusOK
	}
	if v.rootAttrs == nil {
		v.rootAttrs = make(map[string][]byte)
	}
	v.rootAttrs[string(key)] = cp
	return statusOK
}

func appendInt(dst []byte, x int64) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(x))
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// splitAddr returns an address's host:port string and its port.
func splitAddr(a net.Addr) (string, int64, bool) {
	if a == nil {
		return "", 0, false
	}
	s := a.String()
	switch t := a.(type) {
	case *net.TCPAddr:
		return s, int64(t.Port), true
	case *net.UDPAddr:
		return s, int64(t.Port), true
	}
	if _, p, err := net.SplitHostPort(s); err == nil {
		n, _ := strconv.ParseInt(p, 10, 64)
		return s, n, true
	}
	return s, 0, true
}

// envoyFlagBits maps response flag short codes to Envoy's bit values.
var envoyFlagBits = map[string]uint64{
	"LH": 0x1, "UH": 0x2, "UT": 0x4, "LR": 0x8, "UR": 0x10, "UF": 0x20, "UC": 0x40,
	"UO": 0x80, "NR": 0x100, "DI": 0x200, "FI": 0x400, "RL": 0x800, "UAEX": 0x1000,
	"RLSE": 0x2000, "DC": 0x4000, "URX": 0x8000, "SI": 0x10000, "IH": 0x20000, "DPE": 0x40000,
}

func responseFlagBits(s string) uint64 {
	var bits uint64
	for s != "" {
		var code string
		code, s, _ = strings.Cut(s, ",")
		bits |= envoyFlagBits[strings.TrimSpace(code)]
	}
	return bits
}

// property appends the value of a dotted property path to dst in Envoy's
// encoding.
func (v *vm) property(key []byte, dst []byte) ([]byte, bool) {
	p := v.p
	f := v.cur
	if f != nil && f.s.Attributes != nil {
		if val, ok := f.s.Attributes[string(key)]; ok {
			return append(dst, val...), true
		}
	} else if f == nil && v.rootAttrs != nil {
		if val, ok := v.rootAttrs[string(key)]; ok {
			return append(dst, val...), true
		}
	}
	// Properties of the plugin and the node, available everywhere.
	switch string(key) {
	case "plugin_name":
		return append(dst, p.spec.guestName()...), true
	case "plugin_root_id":
		return append(dst, p.spec.RootID...), true
	case "plugin_vm_id":
		return append(dst, p.spec.VMID...), true
	case "node.id", "xds.node.id":
		return append(dst, p.nodeID(f)...), true
	case "node", "xds.node":
		return v.nodeMap(dst, f), true
	case "node.metadata", "xds.node.metadata":
		return serializeStringMap(dst, p.nodeMetadata(f)), true
	}
	if rest, ok := bytes.CutPrefix(key, []byte("node.metadata.")); ok {
		val, found := p.nodeMetadata(f)[string(rest)]
		return append(dst, val...), found
	}
	if f == nil {
		return dst, false
	}
	s := f.s
	req, resp := s.Request, s.Response
	switch string(key) {
	case "request.path":
		return append(dst, originForm(req.RequestURI())...), true
	case "request.url_path":
		u := originForm(req.RequestURI())
		if i := bytes.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		return append(dst, u...), true
	case "request.query":
		u := originForm(req.RequestURI())
		if i := bytes.IndexByte(u, '?'); i >= 0 {
			return append(dst, u[i+1:]...), true
		}
		return dst, true
	case "request.host":
		return append(dst, req.Host()...), true
	case "request.scheme":
		if s.TLS != nil {
			return append(dst, "https"...), true
		}
		return append(dst, "http"...), true
	case "request.method":
		return append(dst, req.Header.Method()...), true
	case "request.headers":
		return headers{req: &req.Header, fullReq: req, https: s.TLS != nil}.serialize(dst), true
	case "request.id":
		if len(s.ID) > 0 {
			return append(dst, s.ID...), true
		}
		id := req.Header.Peek("X-Request-Id")
		return append(dst, id...), len(id) > 0
	case "request.protocol":
		return append(dst, req.Header.Protocol()...), true
	case "request.time":
		if s.StartTime.IsZero() {
			return dst, false
		}
		return appendInt(dst, s.StartTime.UnixNano()), true
	case "request.duration":
		if s.StartTime.IsZero() {
			return dst, false
		}
		return appendInt(dst, int64(time.Since(s.StartTime))), true
	case "request.size":
		return appendInt(dst, int64(len(req.Body()))), true
	case "request.total_size":
		return appendInt(dst, int64(len(req.Header.RawHeaders())+len(req.Body()))), true
	case "request.referer":
		return append(dst, req.Header.Referer()...), true
	case "request.useragent":
		return append(dst, req.Header.UserAgent()...), true
	case "response.code":
		if f.phase != phaseResponse {
			return dst, false
		}
		return appendInt(dst, int64(resp.StatusCode())), true
	case "response.code_details":
		if f.phase != phaseResponse {
			return dst, false
		}
		if f.details != "" {
			return append(dst, f.details...), true
		}
		if strings.Contains(s.ResponseFlags, "LR") {
			return append(dst, "local_reply"...), true
		}
		return append(dst, "via_upstream"...), true
	case "response.flags":
		return appendInt(dst, int64(responseFlagBits(s.ResponseFlags))), true
	case "response.headers":
		if f.phase != phaseResponse {
			return dst, false
		}
		return headers{resp: &resp.Header}.serialize(dst), true
	case "response.size":
		if f.phase != phaseResponse {
			return dst, false
		}
		return appendInt(dst, int64(len(resp.Body()))), true
	case "response.total_size":
		if f.phase != phaseResponse {
			return dst, false
		}
		return appendInt(dst, int64(len(resp.Header.Header())+len(resp.Body()))), true
	case "source.address":
		a, _, ok := splitAddr(s.Source)
		return append(dst, a...), ok
	case "source.port":
		_, port, ok := splitAddr(s.Source)
		return appendInt(dst, port), ok
	case "destination.address":
		a, _, ok := splitAddr(s.Destination)
		return append(dst, a...), ok
	case "destination.port":
		_, port, ok := splitAddr(s.Destination)
		return appendInt(dst, port), ok
	case "connection.mtls":
		return appendBool(dst, s.TLS != nil && s.TLS.MTLS), true
	case "connection.tls_version":
		return dst, s.TLS != nil
	case "connection.requested_server_name":
		if s.TLS == nil {
			return dst, true
		}
		return append(dst, s.TLS.ServerName...), true
	case "connection.uri_san_peer_certificate", "source.principal":
		if s.TLS == nil || s.TLS.PeerURISAN == "" {
			return dst, false
		}
		return append(dst, s.TLS.PeerURISAN...), true
	case "connection.subject_peer_certificate":
		if s.TLS == nil || s.TLS.PeerSubject == "" {
			return dst, false
		}
		return append(dst, s.TLS.PeerSubject...), true
	case "connection.id":
		return appendInt(dst, int64(s.ConnID)), true
	case "upstream.address":
		return append(dst, s.UpstreamAddr...), s.UpstreamAddr != ""
	case "upstream.port":
		if s.UpstreamAddr == "" {
			return dst, false
		}
		_, port, err := net.SplitHostPort(s.UpstreamAddr)
		if err != nil {
			return dst, false
		}
		n, _ := strconv.ParseInt(port, 10, 64)
		return appendInt(dst, n), true
	case "cluster_name", "xds.cluster_name":
		return append(dst, s.ClusterName...), s.ClusterName != ""
	case "route_name", "xds.route_name":
		return append(dst, s.RouteName...), s.RouteName != ""
	case "listener_direction", "xds.listener_direction":
		// Envoy's core.TrafficDirection: UNSPECIFIED 0, INBOUND 1, OUTBOUND 2.
		switch s.Direction {
		case "inbound":
			return appendInt(dst, 1), true
		case "outbound":
			return appendInt(dst, 2), true
		}
		return appendInt(dst, 0), true
	case "listener_name", "xds.listener_name":
		return append(dst, s.Listener...), true
	case "trace.trace_id", "trace.span_id", "trace.parent_span_id", "trace.sampled":
		return traceProperty(s.Trace, key, dst)
	}
	if rest, ok := bytes.CutPrefix(key, []byte("request.headers.")); ok {
		val, found := headers{req: &req.Header, fullReq: req, https: s.TLS != nil}.get(rest)
		return append(dst, val...), found
	}
	if rest, ok := bytes.CutPrefix(key, []byte("response.headers.")); ok && f.phase == phaseResponse {
		val, found := headers{resp: &resp.Header}.get(rest)
		return append(dst, val...), found
	}
	return dst, false
}

// traceProperty reads the stream's trace context: ids as hex strings,
// sampled as a bool. Not found when tracing is off (or, for
// trace.parent_span_id, when this hop started the trace). Writes to
// trace.attributes.<key> land in Stream.Attributes like any property and
// become span attributes.
func traceProperty(tc filter.TraceContext, key, dst []byte) ([]byte, bool) {
	if tc == nil {
		return dst, false
	}
	switch string(key) {
	case "trace.trace_id":
		return append(dst, tc.TraceID()...), true
	case "trace.span_id":
		return append(dst, tc.SpanID()...), true
	case "trace.parent_span_id":
		p := tc.ParentSpanID()
		return append(dst, p...), p != nil
	}
	return appendBool(dst, tc.Sampled()), true
}

func (p *Plugin) nodeID(f *streamFilter) string {
	if f != nil && f.s.NodeID != "" {
		return f.s.NodeID
	}
	return p.env.NodeID
}

func (p *Plugin) nodeMetadata(f *streamFilter) map[string]string {
	if f != nil && f.s.NodeMetadata != nil {
		return f.s.NodeMetadata
	}
	return p.env.NodeMetadata
}

// nodeMap serializes the node as a map: id and metadata.<key> entries.
func (v *vm) nodeMap(dst []byte, f *streamFilter) []byte {
	md := v.p.nodeMetadata(f)
	m := make(map[string]string, len(md)+1)
	m["id"] = v.p.nodeID(f)
	for k, val := range md {
		m["metadata."+k] = val
	}
	return serializeStringMap(dst, m)
}

// serializeStringMap serializes m (keys sorted) as a Proxy-Wasm map.
func serializeStringMap(dst []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([][2][]byte, len(keys))
	for i, k := range keys {
		pairs[i] = [2][]byte{[]byte(k), []byte(m[k])}
	}
	return serializeMap(dst, pairs)
}
