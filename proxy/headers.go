package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"
	"unsafe"

	"github.com/weftmesh/weft/proxy/httpheader"

	"github.com/valyala/fasthttp"
)

// hopByHop are the headers that belong to one connection, never forwarded
// (RFC 9110 §7.6.1). Transfer-Encoding and Connection: close are handled by
// fasthttp's own framing.
var hopByHop = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"}

// hopByHopRequest is hopByHop less Trailer, which announces a request's
// trailers end to end (RFC 9110 §6.6.2), as Envoy forwards it: an HTTP/2
// upstream such as Go's drops trailers it was not told of. It is kept on
// a chunked request only: a body with a length has no trailers on
// HTTP/1.1, and fasthttp would turn one announcing them into chunked.
var hopByHopRequest = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Upgrade"}

// stripHopByHopRequest removes connection-scoped headers, including those the
// Connection header names. keepUpgrade keeps Connection/Upgrade for a
// WebSocket pass-through.
func stripHopByHopRequest(h *fasthttp.RequestHeader, keepUpgrade bool) {
	if keepUpgrade {
		return
	}
	if c := h.PeekCanonical(s2b("Connection")); len(c) > 0 && !bytes.EqualFold(c, []byte("close")) && !bytes.EqualFold(c, []byte("keep-alive")) {
		forEachToken(c, func(tok []byte) { httpheader.DelRequest(h, tok) })
	}
	for _, k := range hopByHopRequest {
		if h.PeekCanonical(s2b(k)) != nil { // canonical keys: no normalising per request
			httpheader.DelRequest(h, s2b(k))
		}
	}
	if h.ContentLength() >= 0 && h.PeekCanonical(s2b("Trailer")) != nil {
		httpheader.DelRequest(h, s2b("Trailer"))
	}
	// The body is already read (and a 100 Continue already sent): asking
	// the upstream to confirm again would only add a round trip.
	if h.PeekCanonical(s2b("Expect")) != nil {
		httpheader.DelRequest(h, s2b("Expect"))
	}
	h.ResetConnectionClose()
}

// stripHopByHopResponse removes connection-scoped headers from an upstream
// response before it goes downstream.
func stripHopByHopResponse(h *fasthttp.ResponseHeader) {
	if c := h.PeekCanonical(s2b("Connection")); len(c) > 0 && !bytes.EqualFold(c, []byte("close")) && !bytes.EqualFold(c, []byte("keep-alive")) {
		forEachToken(c, func(tok []byte) { httpheader.DelResponse(h, tok) })
	}
	for _, k := range hopByHop {
		if h.PeekCanonical(s2b(k)) != nil {
			httpheader.DelResponse(h, s2b(k))
		}
	}
	h.ResetConnectionClose()
}

// s2b views a constant string as bytes without copying.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func forEachToken(v []byte, f func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 {
			f(tok)
		}
	}
}

// setRequestID keeps a client's x-request-id or generates a UUIDv4 one into
// buf, and returns it.
func setRequestID(h *fasthttp.RequestHeader, buf *[36]byte) []byte {
	if id := h.PeekCanonical(s2b("X-Request-Id")); len(id) > 0 {
		return id
	}
	// Request ids need to be unique, not secret: the runtime's per-thread
	// ChaCha8 generator is lock-free and makes no system call.
	var r [16]byte
	binary.LittleEndian.PutUint64(r[0:8], rand.Uint64())
	binary.LittleEndian.PutUint64(r[8:16], rand.Uint64())
	r[6] = r[6]&0x0f | 0x40
	r[8] = r[8]&0x3f | 0x80
	hex.Encode(buf[0:8], r[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], r[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], r[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], r[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], r[10:16])
	h.SetCanonical(s2b("X-Request-Id"), buf[:])
	return buf[:]
}

// setForwarded appends the client address to X-Forwarded-For and sets
// X-Forwarded-Proto. scratch is reused storage.
func setForwarded(h *fasthttp.RequestHeader, remote net.Addr, tls bool, scratch []byte) []byte {
	var ip net.IP
	if ta, ok := remote.(*net.TCPAddr); ok {
		ip = ta.IP
	}
	scratch = scratch[:0]
	if prev := h.PeekCanonical(s2b("X-Forwarded-For")); len(prev) > 0 {
		scratch = append(scratch, prev...)
		scratch = append(scratch, ", "...)
	}
	if a, ok := netip.AddrFromSlice(ip); ok {
		scratch = a.Unmap().AppendTo(scratch)
	} else {
		scratch = append(scratch, "unknown"...)
	}
	h.SetCanonical(s2b("X-Forwarded-For"), scratch)
	if tls {
		h.SetCanonical(s2b("X-Forwarded-Proto"), s2b("https"))
	} else {
		h.SetCanonical(s2b("X-Forwarded-Proto"), s2b("http"))
	}
	return scratch
}

// isUpgrade reports a WebSocket (or other) Upgrade request.
func isUpgrade(h *fasthttp.RequestHeader) bool {
	return h.ConnectionUpgrade() && len(h.Peek("Upgrade")) > 0
}
