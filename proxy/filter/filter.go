package filter

import (
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Status is what a filter callback tells the chain.
type Status uint8

const (
	// Continue passes the stream to the next filter.
	Continue Status = iota
	// LocalReply stops the request path: the filter has written a local
	// response into Stream.Response (status, headers, body). Later request
	// filters and the upstream are skipped; response filters still run.
	LocalReply
	// StopAndBuffer, from a body callback on a chunk that is not the last,
	// holds the body back: the chain keeps it and calls the filter again
	// with the next chunk appended (Envoy's StopIterationAndBuffer).
	StopAndBuffer
)

// Factory makes one StreamFilter per stream. A Factory is built once per
// config snapshot (e.g. a Wasm plugin with its VM pool) and is safe for
// concurrent use.
type Factory interface {
	// Name is the filter's configured name (for logs and metrics).
	Name() string
	// NewStreamFilter binds a filter instance to s. It may return nil when
	// the filter has nothing to do for this stream.
	NewStreamFilter(s *Stream) StreamFilter
}

// StreamFilter sees one stream. Callbacks run on the stream's goroutine; a
// filter that must wait (an HTTP call-out, a timer) blocks inside its
// callback until resumed, without holding anything other streams need.
type StreamFilter interface {
	// OnRequestHeaders sees the request headers (Stream.Request). endOfStream
	// is true when the request has no body.
	OnRequestHeaders(s *Stream, endOfStream bool) Status
	// OnRequestBody sees request body data in Stream.Request's body: a
	// body that came whole with the headers at once (endOfStream true); a
	// streamed one (HTTP/1.1 or HTTP/2) one chunk at a time, or what the
	// filter asked to buffer so far, with endOfStream true on the last.
	// Changing the body changes what goes upstream.
	OnRequestBody(s *Stream, endOfStream bool) Status
	// OnRequestTrailers sees the request trailers (Stream.RequestTrailers),
	// called only on a stream that has them, after the last body chunk.
	OnRequestTrailers(s *Stream) Status
	// OnResponseHeaders sees the response (upstream's or a local reply).
	OnResponseHeaders(s *Stream, endOfStream bool) Status
	// OnResponseBody sees response body data in Stream.Response's body, as
	// OnRequestBody does for requests.
	OnResponseBody(s *Stream, endOfStream bool) Status
	// OnResponseTrailers sees the response trailers (Stream.ResponseTrailers),
	// e.g. a gRPC call's grpc-status; changes reach the client.
	OnResponseTrailers(s *Stream) Status
	// OnLog runs once the response is written (or the stream aborted).
	OnLog(s *Stream)
	// OnDone releases the filter's per-stream state. Always called, once.
	OnDone(s *Stream)
}

// ResponseCombiner is a StreamFilter that can take a response's headers
// and its whole body in one call, cheaper than two (a Wasm filter: one
// entry into its guest instead of two).
type ResponseCombiner interface {
	// OnResponse does what OnResponseHeaders(s, false) and then, unless
	// that answered LocalReply, OnResponseBody(s, true) do, and answers
	// LocalReply if either did, Continue otherwise. The chain calls it
	// instead of the two when the response's body is at hand whole and
	// this filter is the only one that sees the response: with more, the
	// chain makes every filter's headers callback before any body
	// callback (as Envoy does), which one call per filter would reorder.
	OnResponse(s *Stream) Status
}

// Stream is one request/response exchange as filters see it. The proxy owns
// it; filters read and change Request and Response in place.
type Stream struct {
	// Request is the downstream request; filters edit it in place before it
	// is routed and sent upstream.
	Request *fasthttp.Request
	// Response is the upstream response, or the local reply a filter wrote.
	Response *fasthttp.Response

	// ID is the x-request-id.
	ID []byte
	// StartTime is when the request was read.
	StartTime time.Time
	// ConnID identifies the downstream connection.
	ConnID uint64
	// Source and Destination are the downstream peer and the local address.
	Source      net.Addr
	Destination net.Addr
	// TLS is set when the downstream connection is TLS.
	TLS *TLSInfo
	// Listener, Direction ("inbound"/"outbound") are the listener's.
	Listener  string
	Direction string
	// RouteName and ClusterName are set once the route is chosen (response
	// filters and OnLog see them).
	RouteName   string
	ClusterName string
	// UpstreamAddr is the endpoint that answered, if any.
	UpstreamAddr string
	// ListenerMetadata, RouteMetadata and ClusterMetadata are the
	// filter_metadata (namespace → values) of the listener, the route and
	// the cluster, for Wasm filters' properties. Before routing
	// RouteMetadata is the route the request matches then.
	ListenerMetadata, RouteMetadata, ClusterMetadata map[string]map[string]any
	// HostMetadata is the filter_metadata of the cluster's endpoints, by
	// address: upstream_host_metadata is UpstreamAddr's.
	HostMetadata map[string]map[string]map[string]any
	// ResponseFlags describes why a response is what it is (Envoy-style
	// short codes: "UH" no healthy upstream, "UO" overflow, "UT" timeout,
	// "URX" retry limit, "LR" local reply...).
	ResponseFlags string
	// Retries is the number of retries the request took.
	Retries int
	// Node is the sidecar's metadata (Wasm property `node`).
	NodeID       string
	NodeMetadata map[string]string

	// Attributes lets filters leave values for later filters and logs
	// (Wasm proxy_set_property). Allocated on first use.
	Attributes map[string][]byte

	// Trace is the stream's trace context when tracing is on (nil when
	// off). Attributes under "trace.attributes.<key>" become span attributes.
	Trace TraceContext

	// RequestBodyStreamed and ResponseBodyStreamed say a body follows the
	// headers as a stream instead of being whole in Request/Response:
	// header callbacks get endOfStream false, and the body reaches the
	// body callbacks chunk by chunk (Chain.DecodeData, EncodeData).
	RequestBodyStreamed  bool
	ResponseBodyStreamed bool
	// ResponseBytesSent is how many response body bytes went to the client,
	// counted as they flow, on a streamed response (for logs and traces,
	// which must not read a streamed body).
	ResponseBytesSent int64
	// RequestTrailers and ResponseTrailers are a stream's trailers (nil
	// when it has none); filters read and edit them in place.
	RequestTrailers  *fasthttp.ResponseHeader
	ResponseTrailers *fasthttp.ResponseHeader
	// GRPCStatus is the gRPC status the stream ended with (-1: not gRPC or
	// none seen), from the trailers or a trailers-only answer.
	GRPCStatus int
	// Limits bound what filters may add to the stream (the listener's).
	Limits Limits
}

// Limits are the listener's bounds on what filters add to a stream: a
// filter cannot make a message larger than a peer could have sent it.
// Going over is the filter's error (its failure policy applies). Zero
// values mean no bound.
type Limits struct {
	// MaxHeaderBytes bounds the header bytes (name, value and 4 bytes of
	// framing per field) filters write into one direction's headers and
	// trailers, whether they add or replace.
	MaxHeaderBytes int
	// MaxHeaders bounds the header fields filters write into one
	// direction's headers and trailers.
	MaxHeaders int
	// MaxBodyBytes bounds a body (or body chunk) as a filter rewrites it.
	MaxBodyBytes int
}

// TraceContext is a stream's trace as filters see it. The byte slices
// belong to the stream: copy them to keep them.
type TraceContext interface {
	// TraceID is the trace id in 32 lowercase hex digits.
	TraceID() []byte
	// SpanID is this hop's span id (the parent the upstream sees), 16 hex digits.
	SpanID() []byte
	// ParentSpanID is the caller's span id, nil when this hop started the trace.
	ParentSpanID() []byte
	// Sampled reports whether this hop's span is recorded.
	Sampled() bool
}

// TLSInfo describes the downstream TLS connection.
type TLSInfo struct {
	MTLS bool
	// ServerName is the SNI the client asked for.
	ServerName string
	// PeerURISAN is the peer certificate's first URI SAN (its SPIFFE ID).
	PeerURISAN string
	// PeerSubject is the peer certificate's subject.
	PeerSubject string
}

// SetAttribute stores a filter-set property.
func (s *Stream) SetAttribute(key string, v []byte) {
	if s.Attributes == nil {
		s.Attributes = make(map[string][]byte)
	}
	s.Attributes[key] = v
}

// SendLocalReply writes a local response into s.Response. Filters return
// LocalReply after calling it.
func (s *Stream) SendLocalReply(status int, body []byte, headers [][2]string) {
	s.Response.Reset()
	s.Response.SetStatusCode(status)
	for _, h := range headers {
		s.Response.Header.Add(h[0], h[1])
	}
	s.Response.SetBody(body)
	if s.ResponseFlags == "" {
		s.ResponseFlags = "LR"
	}
}
