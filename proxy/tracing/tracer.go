package tracing

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/httpheader"
)

// DefaultForceHeader is the request header that forces a trace when its
// value is ForceValue.
const (
	DefaultForceHeader = "X-Weft-Trace"
	ForceValue         = "force"
)

// AttributePrefix is the Stream.Attributes key prefix (a Wasm
// proxy_set_property on "trace.attributes.<key>") whose entries become span
// attributes named <key>.
const AttributePrefix = "trace.attributes."

// Options configure a Tracer.
type Options struct {
	// SamplingPercent is the share of new traces (and of traces whose
	// caller made no decision) that are recorded, 0 to 100.
	SamplingPercent float64
	// ForceHeader names the header whose value "force" records the trace
	// whatever the ratio or the parent says (default X-Weft-Trace).
	ForceHeader string
	// Node is this sidecar's id, recorded on every span.
	Node string
}

// Tracer starts and ends the spans of one config snapshot. It is safe for
// concurrent use.
type Tracer struct {
	threshold uint64 // sample when the trace id's low 63 bits are below it
	always    bool
	forceKey  []byte
	node      string
	exp       *Exporter
}

// New makes a tracer that sends sampled spans to exp (nil: spans are
// propagated and counted, never exported).
func New(o Options, exp *Exporter) *Tracer {
	t := &Tracer{exp: exp, node: o.Node}
	p := o.SamplingPercent
	switch {
	case p >= 100:
		t.always = true
	case p > 0:
		t.threshold = uint64(p / 100 * (1 << 63))
	}
	fh := o.ForceHeader
	if fh == "" {
		fh = DefaultForceHeader
	}
	t.forceKey = canonical([]byte(fh)) // the hot path peeks canonical keys
	return t
}

// canonical turns a header name into fasthttp's canonical form
// ("x-weft-trace" → "X-Weft-Trace").
func canonical(k []byte) []byte {
	up := true
	for i, c := range k {
		switch {
		case up && c >= 'a' && c <= 'z':
			k[i] = c - 32
		case !up && c >= 'A' && c <= 'Z':
			k[i] = c + 32
		}
		up = c == '-'
	}
	return k
}

// Exporter is where sampled spans go (nil when none).
func (t *Tracer) Exporter() *Exporter { return t.exp }

// sample decides for a trace with no usable decision from the caller.
func (t *Tracer) sample(id *[16]byte) bool {
	if t.always {
		return true
	}
	return binary.BigEndian.Uint64(id[8:])>>1 < t.threshold
}

// Propagation formats of the incoming request, kept on the way out.
const (
	b3None uint8 = iota
	b3Single
	b3Multi
)

// Span is one hop through the sidecar. Spans are pooled: after End the
// caller must not touch it. A Span implements filter.TraceContext.
type Span struct {
	t         *Tracer
	ctx       SpanContext // this hop's ids and decision
	parent    [8]byte
	hasParent bool
	b3        uint8
	b3Short   bool

	traceHex  [32]byte
	spanHex   [16]byte
	parentHex [16]byte
	out       [TraceparentLen]byte
	b3out     [32 + 1 + 16 + 2 + 1 + 16]byte

	// Recorded at End, read by the exporter.
	inbound             bool
	start, end          time.Time
	method, path, host  []byte
	requestID           []byte
	listener, route     string
	cluster, upstream   string
	flags, peer         string
	status, retries     int
	reqBytes, respBytes int
	attrs               []attr
}

type attr struct {
	key string
	val []byte
}

var spanPool = sync.Pool{New: func() any { return new(Span) }}

func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Start continues the trace the request carries (traceparent, else b3,
// else X-B3-*) or starts one, decides whether this hop is recorded, and
// rewrites the propagation headers so the upstream sees this hop's span as
// its parent. It never returns nil.
func (t *Tracer) Start(h *fasthttp.RequestHeader, inbound bool, start time.Time) *Span {
	sp := spanPool.Get().(*Span)
	sp.t, sp.inbound, sp.start = t, inbound, start
	sp.hasParent, sp.b3, sp.b3Short = false, b3None, false

	var in SpanContext
	ids := false
	if v := h.PeekCanonical(s2b("Traceparent")); v != nil {
		in, ids = ParseTraceparent(v)
	}
	if !ids {
		if v := h.PeekCanonical(s2b("B3")); v != nil {
			if c, withIDs, ok := ParseB3(v); ok {
				in, ids, sp.b3 = c, withIDs, b3Single
				sp.b3Short = withIDs && len(v) > 16 && v[16] == '-'
			}
		} else if tid, sid := h.PeekCanonical(s2b("X-B3-Traceid")), h.PeekCanonical(s2b("X-B3-Spanid")); tid != nil || sid != nil ||
			h.PeekCanonical(s2b("X-B3-Sampled")) != nil || h.PeekCanonical(s2b("X-B3-Flags")) != nil {
			if c, withIDs, ok := ParseB3Multi(tid, sid, h.PeekCanonical(s2b("X-B3-Sampled")), h.PeekCanonical(s2b("X-B3-Flags"))); ok {
				in, ids, sp.b3 = c, withIDs, b3Multi
				sp.b3Short = withIDs && len(tid) == 16
			}
		}
	}

	if ids && sp.b3 == b3None { // W3C won; B3 headers beside it are kept in step
		if v := h.PeekCanonical(s2b("B3")); v != nil {
			sp.b3, sp.b3Short = b3Single, len(v) > 16 && v[16] == '-'
		} else if v := h.PeekCanonical(s2b("X-B3-Traceid")); v != nil {
			sp.b3, sp.b3Short = b3Multi, len(v) == 16
		}
	}

	c := &sp.ctx
	*c = SpanContext{Debug: in.Debug}
	if ids {
		c.TraceID = in.TraceID
		sp.parent, sp.hasParent = in.SpanID, true
	} else {
		binary.BigEndian.PutUint64(c.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(c.TraceID[8:], rand.Uint64()|1)
		if h.PeekCanonical(s2b("Tracestate")) != nil {
			httpheader.DelRequest(h, s2b("Tracestate")) // it belongs to a trace we do not continue
		}
	}
	binary.BigEndian.PutUint64(c.SpanID[:], rand.Uint64()|1)
	switch {
	case in.Debug || bytes.EqualFold(h.PeekCanonical(t.forceKey), s2b(ForceValue)):
		c.Sampled = true
	case in.HasDecision:
		c.Sampled = in.Sampled
	default:
		c.Sampled = t.sample(&c.TraceID)
	}
	c.HasDecision = true

	hex.Encode(sp.traceHex[:], c.TraceID[:])
	hex.Encode(sp.spanHex[:], c.SpanID[:])
	if sp.hasParent {
		hex.Encode(sp.parentHex[:], sp.parent[:])
	}
	h.SetCanonical(s2b("Traceparent"), AppendTraceparent(sp.out[:0], c))
	switch sp.b3 {
	case b3Single:
		var parent *[8]byte
		if sp.hasParent {
			parent = &sp.parent
		}
		h.SetCanonical(s2b("B3"), AppendB3(sp.b3out[:0], c, parent, sp.b3Short))
	case b3Multi:
		b := sp.b3out[:0]
		h.SetCanonical(s2b("X-B3-Traceid"), appendB3TraceID(b, &c.TraceID, sp.b3Short))
		h.SetCanonical(s2b("X-B3-Spanid"), sp.spanHex[:])
		if sp.hasParent {
			h.SetCanonical(s2b("X-B3-Parentspanid"), sp.parentHex[:])
		}
		if !c.Debug {
			if c.Sampled {
				h.SetCanonical(s2b("X-B3-Sampled"), s2b("1"))
			} else {
				h.SetCanonical(s2b("X-B3-Sampled"), s2b("0"))
			}
		}
	}
	return sp
}

// TraceID is the trace id in 32 lowercase hex digits (filter.TraceContext).
// The bytes belong to the span.
func (sp *Span) TraceID() []byte { return sp.traceHex[:] }

// SpanID is this hop's span id in 16 hex digits (filter.TraceContext).
func (sp *Span) SpanID() []byte { return sp.spanHex[:] }

// ParentSpanID is the caller's span id in 16 hex digits, nil when this hop
// started the trace (filter.TraceContext).
func (sp *Span) ParentSpanID() []byte {
	if !sp.hasParent {
		return nil
	}
	return sp.parentHex[:]
}

// Sampled reports whether this hop is recorded (filter.TraceContext).
func (sp *Span) Sampled() bool { return sp.ctx.Sampled }

// Context is this hop's span context (the one sent upstream).
func (sp *Span) Context() SpanContext { return sp.ctx }

var _ filter.TraceContext = (*Span)(nil)

// End records the finished stream into the span and queues it for export
// when sampled (never blocking: a full queue drops it and counts the
// drop); otherwise it returns the span to the pool. sp must not be used
// afterwards.
func (sp *Span) End(s *filter.Stream, end time.Time) {
	exp := sp.t.exp
	if !sp.ctx.Sampled || exp == nil {
		if exp != nil {
			exp.stats.NotSampled.Add(1)
		}
		releaseSpan(sp)
		return
	}
	sp.end = end
	req, resp := s.Request, s.Response
	sp.method = append(sp.method[:0], req.Header.Method()...)
	sp.path = append(sp.path[:0], req.URI().PathOriginal()...)
	sp.host = append(sp.host[:0], req.Host()...)
	sp.requestID = append(sp.requestID[:0], s.ID...)
	sp.listener, sp.route, sp.cluster, sp.upstream = s.Listener, s.RouteName, s.ClusterName, s.UpstreamAddr
	sp.flags, sp.peer = s.ResponseFlags, ""
	if s.TLS != nil {
		sp.peer = s.TLS.PeerURISAN
	}
	sp.status, sp.retries = resp.StatusCode(), s.Retries
	sp.reqBytes = len(req.Body())
	if s.ResponseBodyStreamed {
		sp.respBytes = int(s.ResponseBytesSent) // a streamed body is not read here
	} else {
		sp.respBytes = len(resp.Body())
	}
	sp.attrs = sp.attrs[:0]
	for k, v := range s.Attributes { // values are the filter's own copies
		if strings.HasPrefix(k, AttributePrefix) && len(k) > len(AttributePrefix) {
			sp.attrs = append(sp.attrs, attr{key: k[len(AttributePrefix):], val: v})
		}
	}
	exp.enqueue(sp)
}

func releaseSpan(sp *Span) {
	for i := range sp.attrs {
		sp.attrs[i] = attr{}
	}
	sp.attrs = sp.attrs[:0]
	sp.t = nil
	spanPool.Put(sp)
}

// TraceIDFromHeader returns the trace id in a traceparent header (a slice
// of the header's own bytes, no copy), or nil. The access log uses it when
// tracing is off.
func TraceIDFromHeader(h *fasthttp.RequestHeader) []byte {
	v := h.PeekCanonical(s2b("Traceparent"))
	if len(v) < TraceparentLen || v[2] != '-' || v[35] != '-' {
		return nil
	}
	for _, c := range v[3:35] {
		if _, ok := hexVal(c); !ok {
			return nil
		}
	}
	return v[3:35]
}
