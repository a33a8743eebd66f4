package tracing

import (
	"encoding/hex"
)

// SpanContext is the part of a trace that crosses process boundaries.
type SpanContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	// Sampled is the sampling decision carried by the context.
	Sampled bool
	// HasDecision is false when the carrier made no sampling decision (B3
	// without X-B3-Sampled); the receiver decides then.
	HasDecision bool
	// Debug is B3's debug flag (X-B3-Flags: 1, or "d" in the b3 header):
	// the trace is forced.
	Debug bool
}

// IsValid reports whether both ids are non-zero.
func (c *SpanContext) IsValid() bool { return c.TraceID != [16]byte{} && c.SpanID != [8]byte{} }

// hexVal decodes one lowercase-or-uppercase hex digit; ok is false for
// anything else.
func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// lowerHex decodes src (even length, lowercase hex only, as W3C requires)
// into dst.
func lowerHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		a, b := src[2*i], src[2*i+1]
		if (a >= 'A' && a <= 'F') || (b >= 'A' && b <= 'F') {
			return false
		}
		x, ok1 := hexVal(a)
		y, ok2 := hexVal(b)
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = x<<4 | y
	}
	return true
}

// anyHex decodes src (hex of either case) into the low end of dst, left
// padding with zeros: a 64-bit B3 trace id becomes a 128-bit one.
func anyHex(dst, src []byte) bool {
	if len(src)%2 != 0 || len(src) > 2*len(dst) || len(src) == 0 {
		return false
	}
	off := len(dst) - len(src)/2
	for i := range dst[:off] {
		dst[i] = 0
	}
	for i := 0; i < len(src)/2; i++ {
		x, ok1 := hexVal(src[2*i])
		y, ok2 := hexVal(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[off+i] = x<<4 | y
	}
	return true
}

// ParseTraceparent reads a W3C traceparent header value
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"). Versions other
// than 00 are read as 00 when their first four fields are well formed, as
// the spec asks; version ff, all-zero ids and uppercase hex are invalid.
func ParseTraceparent(v []byte) (SpanContext, bool) {
	var c SpanContext
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return c, false
	}
	var ver [1]byte
	if !lowerHex(ver[:], v[0:2]) || ver[0] == 0xff {
		return c, false
	}
	if ver[0] == 0 && len(v) != 55 {
		return c, false
	}
	if len(v) > 55 && v[55] != '-' {
		return c, false
	}
	var flags [1]byte
	if !lowerHex(c.TraceID[:], v[3:35]) || !lowerHex(c.SpanID[:], v[36:52]) || !lowerHex(flags[:], v[53:55]) {
		return c, false
	}
	if !c.IsValid() {
		return SpanContext{}, false
	}
	c.Sampled = flags[0]&1 == 1
	c.HasDecision = true
	return c, true
}

// TraceparentLen is the length of a version-00 traceparent value.
const TraceparentLen = 55

// AppendTraceparent appends c as a version-00 traceparent value.
func AppendTraceparent(dst []byte, c *SpanContext) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, c.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, c.SpanID[:])
	if c.Sampled {
		return append(dst, "-01"...)
	}
	return append(dst, "-00"...)
}

// parseB3Sampled reads a B3 sampling state: "1"/"0" (and the legacy
// "true"/"false"), or "d" for debug.
func parseB3Sampled(c *SpanContext, v []byte) bool {
	switch string(v) {
	case "1", "true":
		c.Sampled, c.HasDecision = true, true
	case "0", "false":
		c.Sampled, c.HasDecision = false, true
	case "d":
		c.Sampled, c.HasDecision, c.Debug = true, true, true
	default:
		return false
	}
	return true
}

// ParseB3 reads a single b3 header value:
// "{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]" or a sampling
// state alone ("0", "1", "d"). With ids, it returns the context and
// ids=true; with a sampling state alone, only the decision (ids=false).
// ok is false when the value is malformed.
func ParseB3(v []byte) (c SpanContext, ids, ok bool) {
	if len(v) <= 5 { // "0", "1", "d", "true", "false"
		return c, false, parseB3Sampled(&c, v)
	}
	tid, rest, found := cut(v)
	if !found || (len(tid) != 16 && len(tid) != 32) || !anyHex(c.TraceID[:], tid) {
		return SpanContext{}, false, false
	}
	sid, rest, more := cut(rest)
	if len(sid) != 16 || !anyHex(c.SpanID[:], sid) {
		return SpanContext{}, false, false
	}
	if more {
		var st []byte
		st, rest, more = cut(rest)
		if !parseB3Sampled(&c, st) {
			return SpanContext{}, false, false
		}
		if more {
			var parent [8]byte
			if len(rest) != 16 || !anyHex(parent[:], rest) {
				return SpanContext{}, false, false
			}
		}
	}
	if !c.IsValid() {
		return SpanContext{}, false, false
	}
	return c, true, true
}

func cut(v []byte) (before, after []byte, found bool) {
	for i, b := range v {
		if b == '-' {
			return v[:i], v[i+1:], true
		}
	}
	return v, nil, false
}

// ParseB3Multi reads the X-B3-* headers (any may be nil). As with ParseB3,
// ids reports a full context, ok a well-formed one (a sampling decision
// alone is well formed).
func ParseB3Multi(traceID, spanID, sampled, flags []byte) (c SpanContext, ids, ok bool) {
	if len(flags) > 0 {
		if string(flags) != "1" && string(flags) != "0" {
			return SpanContext{}, false, false
		}
		if string(flags) == "1" {
			c.Debug, c.Sampled, c.HasDecision = true, true, true
		}
	}
	if len(sampled) > 0 && !c.Debug && !parseB3Sampled(&c, sampled) {
		return SpanContext{}, false, false
	}
	if len(traceID) == 0 && len(spanID) == 0 {
		return c, false, c.HasDecision
	}
	if (len(traceID) != 16 && len(traceID) != 32) || len(spanID) != 16 ||
		!anyHex(c.TraceID[:], traceID) || !anyHex(c.SpanID[:], spanID) || !c.IsValid() {
		return SpanContext{}, false, false
	}
	return c, true, true
}

// appendB3TraceID appends the trace id in 16 or 32 hex digits.
func appendB3TraceID(dst []byte, id *[16]byte, short bool) []byte {
	if short {
		return hex.AppendEncode(dst, id[8:])
	}
	return hex.AppendEncode(dst, id[:])
}

// AppendB3 appends a single b3 header value for c:
// "{TraceId}-{SpanId}-{1|0|d}[-{ParentSpanId}]". short writes a 64-bit
// trace id (when the caller received one); parent may be nil.
func AppendB3(dst []byte, c *SpanContext, parent *[8]byte, short bool) []byte {
	dst = appendB3TraceID(dst, &c.TraceID, short)
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, c.SpanID[:])
	switch {
	case c.Debug:
		dst = append(dst, "-d"...)
	case c.Sampled:
		dst = append(dst, "-1"...)
	default:
		dst = append(dst, "-0"...)
	}
	if parent != nil {
		dst = append(dst, '-')
		dst = hex.AppendEncode(dst, parent[:])
	}
	return dst
}
