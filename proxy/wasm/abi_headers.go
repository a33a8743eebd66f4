package wasm

import (
	"bytes"
	"github.com/weftmesh/weft/proxy/httpheader"
	"iter"
	"strconv"

	"github.com/valyala/fasthttp"
)

// headerFuncs: the header/trailer/metadata map functions.
func headerFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_get_header_map_pairs", host(proxyGetHeaderMapPairs), params(3)},
		{"proxy_set_header_map_pairs", host(proxySetHeaderMapPairs), params(3)},
		{"proxy_get_header_map_value", host(proxyGetHeaderMapValue), params(5)},
		{"proxy_add_header_map_value", host(proxyAddHeaderMapValue), params(5)},
		{"proxy_replace_header_map_value", host(proxyReplaceHeaderMapValue), params(5)},
		{"proxy_remove_header_map_value", host(proxyRemoveHeaderMapValue), params(3)},
		{"proxy_get_header_map_size", host(proxyGetHeaderMapSize), params(2)},
	}
}

var (
	pseudoMethod      = []byte(":method")
	pseudoPath        = []byte(":path")
	pseudoAuthority   = []byte(":authority")
	pseudoScheme      = []byte(":scheme")
	pseudoStatus      = []byte(":status")
	dispatchStatusKey = []byte(dispatchStatus)
	hostKey           = []byte("host")
	schemeHTTP        = []byte("http")
	schemeHTTPS       = []byte("https")
)

// headers is what a header map type resolves to for the current context.
type headers struct {
	req      *fasthttp.RequestHeader
	fullReq  *fasthttp.Request
	resp     *fasthttp.ResponseHeader
	readOnly bool
	empty    bool // a map that exists but holds nothing here (trailers)
	https    bool
	// trailer: resp is a trailer map (no :status).
	trailer bool
	// failure is a failed call-out's reason: the map then holds only
	// :dispatch_status.
	failure []byte
}

// headerMap resolves a map type. ok is false when the map is not available
// in this context (Envoy answers NotFound).
func (v *vm) headerMap(mt uint32) (h headers, ok bool) {
	f := v.cur
	switch mt {
	case mapRequestHeaders:
		if f == nil {
			return h, false
		}
		h.fullReq = f.s.Request
		h.req = &f.s.Request.Header
		h.https = f.s.TLS != nil
		return h, true
	case mapResponseHeaders:
		if f == nil || f.phase != phaseResponse {
			return h, false
		}
		h.resp = &f.s.Response.Header
		return h, true
	case mapRequestTrailers, mapResponseTrailers:
		// A stream's trailers (HTTP/2, gRPC); a message without any (every
		// HTTP/1.1 one) has an empty map.
		if f == nil {
			return h, false
		}
		t := f.s.RequestTrailers
		if mt == mapResponseTrailers {
			t = f.s.ResponseTrailers
		}
		if t == nil {
			h.empty = true
			return h, true
		}
		h.resp, h.trailer = t, true
		return h, true
	case mapGrpcInitialMeta, mapGrpcTrailingMeta:
		if v.grpc == nil || v.grpc.metaMap != mt || v.grpc.meta == nil {
			return h, false
		}
		h.resp, h.trailer, h.readOnly = v.grpc.meta, true, true
		return h, true
	case mapHTTPCallHeaders:
		if v.callResp == nil && v.callFailure != "" {
			// The callback was told 0 headers, as Envoy does, so filters
			// that test for that keep working; one that reads the map
			// learns why (Kong's :dispatch_status).
			h.failure, h.readOnly = []byte(v.callFailure), true
			return h, true
		}
		if v.callResp == nil {
			return h, false
		}
		h.resp = &v.callResp.Header
		h.readOnly = true
		return h, true
	case mapHTTPCallTrailers:
		if v.callResp == nil {
			return h, false
		}
		h.empty = true
		h.readOnly = true
		return h, true
	}
	return h, false
}

// all yields the map's pairs as the guest sees them: pseudo-headers first,
// then the headers (Host is :authority).
func (h headers) all() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		switch {
		case h.empty:
		case h.failure != nil:
			yield(dispatchStatusKey, h.failure)
		case h.req != nil:
			if !yield(pseudoMethod, h.req.Method()) || !yield(pseudoPath, originForm(h.req.RequestURI())) ||
				!yield(pseudoAuthority, h.req.Host()) {
				return
			}
			sch := schemeHTTP
			if h.https {
				sch = schemeHTTPS
			}
			if !yield(pseudoScheme, sch) {
				return
			}
			for k, val := range h.req.All() {
				if len(k) == 4 && bytes.EqualFold(k, hostKey) {
					continue
				}
				if !yield(k, val) {
					return
				}
			}
		case h.resp != nil:
			var b [3]byte
			if !h.trailer && !yield(pseudoStatus, strconv.AppendUint(b[:0], uint64(h.resp.StatusCode()), 10)) {
				return
			}
			for k, val := range h.resp.All() {
				if !yield(k, val) {
					return
				}
			}
		}
	}
}

// count is the number of pairs in the map: what all yields, counted
// without building the pseudo-headers' values (every header callback
// passes it, so it is on the path of every stream).
func (h headers) count() int {
	n := 0
	switch {
	case h.empty:
	case h.failure != nil:
		n = 1
	case h.req != nil:
		n = 4 // :method, :path, :authority, :scheme
		for k := range h.req.All() {
			if len(k) == 4 && bytes.EqualFold(k, hostKey) {
				continue
			}
			n++
		}
	case h.resp != nil:
		if !h.trailer {
			n = 1 // :status
		}
		for range h.resp.All() {
			n++
		}
	}
	return n
}

// serialize appends the map's Proxy-Wasm serialization to dst, with header
// names in lower case.
func (h headers) serialize(dst []byte) []byte {
	n := h.count()
	base := len(dst)
	dst = appendU32(dst, uint32(n))
	sizes := len(dst)
	for i := 0; i < n; i++ {
		dst = appendU32(dst, 0)
		dst = appendU32(dst, 0)
	}
	i := 0
	for k, val := range h.all() {
		if i == n {
			break
		}
		putU32(dst[sizes+i*8:], uint32(len(k)))
		putU32(dst[sizes+i*8+4:], uint32(len(val)))
		start := len(dst)
		dst = append(dst, k...)
		lower(dst[start:])
		dst = append(dst, 0)
		dst = append(dst, val...)
		dst = append(dst, 0)
		i++
	}
	_ = base
	return dst
}

// get returns the first value of key (lower case, or a pseudo-header).
func (h headers) get(key []byte) ([]byte, bool) {
	if h.empty {
		return nil, false
	}
	if len(key) > 0 && key[0] == ':' {
		for k, val := range h.all() {
			if len(k) == 0 || k[0] != ':' {
				break
			}
			if bytes.Equal(k, key) {
				return val, true
			}
		}
		return nil, false
	}
	if h.req != nil {
		if bytes.EqualFold(key, hostKey) {
			host := h.req.Host()
			return host, len(host) > 0
		}
		if val := h.req.PeekBytes(key); val != nil {
			return val, true
		}
		for k, val := range h.req.All() {
			if bytes.EqualFold(k, key) {
				return val, true
			}
		}
		return nil, false
	}
	if h.resp == nil { // a failed call-out's map: :dispatch_status only
		return nil, false
	}
	if val := h.resp.PeekBytes(key); val != nil {
		return val, true
	}
	for k, val := range h.resp.All() {
		if bytes.EqualFold(k, key) {
			return val, true
		}
	}
	return nil, false
}

// setPseudo applies a write to a pseudo-header; ok is false for an unknown
// one.
func (h headers) setPseudo(key, val []byte) uint32 {
	switch {
	case h.req != nil && bytes.Equal(key, pseudoMethod):
		h.req.SetMethodBytes(val)
	case h.req != nil && bytes.Equal(key, pseudoPath):
		h.fullReq.SetRequestURIBytes(val)
	case h.req != nil && bytes.Equal(key, pseudoAuthority):
		h.fullReq.URI().SetHostBytes(val)
		h.req.SetHostBytes(val)
	case h.req != nil && bytes.Equal(key, pseudoScheme):
		h.fullReq.URI().SetSchemeBytes(val)
	case h.resp != nil && !h.trailer && bytes.Equal(key, pseudoStatus):
		code, err := strconv.Atoi(string(val))
		if err != nil || code < 100 || code > 999 {
			return statusBadArgument
		}
		h.resp.SetStatusCode(code)
	default:
		return statusBadArgument
	}
	return statusOK
}

// check reports, without writing, the status add or set of key would
// return: only pseudo-headers can be refused.
func (h headers) check(key, val []byte) uint32 {
	if len(key) == 0 || key[0] != ':' {
		return statusOK
	}
	switch {
	case h.req != nil && (bytes.Equal(key, pseudoMethod) || bytes.Equal(key, pseudoPath) ||
		bytes.Equal(key, pseudoAuthority) || bytes.Equal(key, pseudoScheme)):
	case h.resp != nil && !h.trailer && bytes.Equal(key, pseudoStatus):
		code, err := strconv.Atoi(string(val))
		if err != nil || code < 100 || code > 999 {
			return statusBadArgument
		}
	default:
		return statusBadArgument
	}
	return statusOK
}

func (h headers) set(key, val []byte) uint32 {
	if len(key) > 0 && key[0] == ':' {
		return h.setPseudo(key, val)
	}
	if h.req != nil {
		if bytes.EqualFold(key, hostKey) {
			return h.setPseudo(pseudoAuthority, val)
		}
		httpheader.SetRequest(h.req, key, val)
	} else {
		httpheader.SetResponse(h.resp, key, val)
	}
	return statusOK
}

func (h headers) add(key, val []byte) uint32 {
	if len(key) > 0 && key[0] == ':' {
		return h.setPseudo(key, val)
	}
	if h.req != nil {
		if bytes.EqualFold(key, hostKey) {
			return h.setPseudo(pseudoAuthority, val)
		}
		h.req.AddBytesKV(key, val)
	} else {
		h.resp.AddBytesKV(key, val)
	}
	return statusOK
}

func (h headers) del(key []byte) {
	if len(key) > 0 && key[0] == ':' {
		return // pseudo-headers can't be removed from an HTTP/1.1 message
	}
	if h.req != nil {
		httpheader.DelRequest(h.req, key)
	} else {
		httpheader.DelResponse(h.resp, key)
	}
}

// clear removes every regular header (for set_header_map_pairs).
func (h headers) clear(scratch []byte) []byte {
	var keys [][2]int
	scratch = scratch[:0]
	for k := range h.all() {
		if len(k) > 0 && k[0] == ':' {
			continue
		}
		if h.req != nil && bytes.EqualFold(k, hostKey) {
			continue
		}
		keys = append(keys, [2]int{len(scratch), len(scratch) + len(k)})
		scratch = append(scratch, k...)
	}
	for _, r := range keys {
		h.del(scratch[r[0]:r[1]])
	}
	return scratch
}

// proxy_get_header_map_pairs(map, ret_ptr_ptr, ret_len_ptr)
func proxyGetHeaderMapPairs(v *vm, st []uint64) uint32 {
	h, ok := v.headerMap(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	v.scratch = h.serialize(v.scratch[:0])
	return v.copyOut(v.scratch, uint32(st[1]), uint32(st[2]))
}

// proxy_set_header_map_pairs(map, ptr, len)
func proxySetHeaderMapPairs(v *vm, st []uint64) uint32 {
	h, ok := v.headerMap(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	if h.readOnly || h.empty {
		return statusBadArgument
	}
	b, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	// Copy: header writes below must not alias guest memory.
	v.scratch = append(v.scratch[:0], b...)
	pairs, ok := parseMap(v.pairs[:0], v.scratch)
	v.pairs = pairs[:0]
	if !ok {
		return statusParseFailure
	}
	// Refuse before the first write: a refused map must not half-apply.
	n := 0
	for _, kv := range pairs {
		if err := checkPair(kv[0], kv[1], h.req != nil); err != nil {
			return v.refuseWrite(err)
		}
		if st := h.check(kv[0], kv[1]); st != statusOK {
			return st
		}
		n += len(kv[0]) + len(kv[1])
	}
	if !v.admitHeaders(uint32(st[0]), len(pairs), n) {
		return statusBadArgument
	}
	keys := h.clear(nil)
	_ = keys
	for _, kv := range pairs {
		if st := h.add(kv[0], kv[1]); st != statusOK {
			return st
		}
	}
	return statusOK
}

// proxy_get_header_map_value(map, key_ptr, key_len, ret_ptr_ptr, ret_len_ptr)
func proxyGetHeaderMapValue(v *vm, st []uint64) uint32 {
	key, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, ok := v.headerMap(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	val, ok := h.get(key)
	if !ok {
		return statusNotFound
	}
	return v.copyOut(val, uint32(st[3]), uint32(st[4]))
}

// headerKV reads key and value for add/replace.
func (v *vm) headerKV(st []uint64) (headers, []byte, []byte, uint32) {
	key, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return headers{}, nil, nil, statusInvalidMemoryAccess
	}
	val, ok := v.read(uint32(st[3]), uint32(st[4]))
	if !ok {
		return headers{}, nil, nil, statusInvalidMemoryAccess
	}
	h, ok := v.headerMap(uint32(st[0]))
	if !ok {
		return h, nil, nil, statusNotFound
	}
	if h.readOnly || h.empty {
		return h, nil, nil, statusBadArgument
	}
	return h, key, val, statusOK
}

// proxy_add_header_map_value(map, k, klen, v, vlen)
func proxyAddHeaderMapValue(v *vm, st []uint64) uint32 {
	h, key, val, s := v.headerKV(st)
	if s != statusOK {
		return s
	}
	if err := checkPair(key, val, h.req != nil); err != nil {
		return v.refuseWrite(err)
	}
	if !v.admitHeaders(uint32(st[0]), 1, len(key)+len(val)) {
		return statusBadArgument
	}
	return h.add(key, val)
}

// proxy_replace_header_map_value(map, k, klen, v, vlen)
func proxyReplaceHeaderMapValue(v *vm, st []uint64) uint32 {
	h, key, val, s := v.headerKV(st)
	if s != statusOK {
		return s
	}
	if err := checkPair(key, val, h.req != nil); err != nil {
		return v.refuseWrite(err)
	}
	if !v.admitHeaders(uint32(st[0]), 1, len(key)+len(val)) {
		return statusBadArgument
	}
	return h.set(key, val)
}

// proxy_remove_header_map_value(map, k, klen)
func proxyRemoveHeaderMapValue(v *vm, st []uint64) uint32 {
	key, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, ok := v.headerMap(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	if h.readOnly || h.empty {
		return statusBadArgument
	}
	h.del(key)
	return statusOK
}

// proxy_get_header_map_size(map, ret_size_ptr): the serialized size.
func proxyGetHeaderMapSize(v *vm, st []uint64) uint32 {
	h, ok := v.headerMap(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	v.scratch = h.serialize(v.scratch[:0])
	if !v.writeU32(uint32(st[1]), uint32(len(v.scratch))) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func appendU32(b []byte, x uint32) []byte {
	return append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
}

func putU32(b []byte, x uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
}

// lower turns ASCII upper case letters in b into lower case, in place.
func lower(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}

// originForm is the path and query of a request target: a proxy-style
// absolute URI ("http://host/p?q") becomes "/p?q", as Envoy's :path is.
func originForm(uri []byte) []byte {
	var rest []byte
	switch {
	case len(uri) > 7 && bytes.EqualFold(uri[:7], []byte("http://")):
		rest = uri[7:]
	case len(uri) > 8 && bytes.EqualFold(uri[:8], []byte("https://")):
		rest = uri[8:]
	default:
		return uri
	}
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		if rest[i] == '?' {
			return append([]byte("/"), rest[i:]...)
		}
		return rest[i:]
	}
	return []byte("/")
}
