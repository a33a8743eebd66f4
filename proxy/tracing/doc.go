// Package tracing owns distributed tracing in the sidecar: reading and
// writing trace context (W3C traceparent/tracestate, B3 single and multi
// header), the sampling decision (ratio, parent-based, forced), one span
// per hop recorded into pooled records, and a bounded, batching OTLP
// HTTP/protobuf exporter that drops (and counts) rather than blocks.
//
// It must not decide anything about traffic (routing, retries, answers),
// must never block a request (the queue is non-blocking), and must not keep
// references to a request's buffers after Span.End returns.
package tracing
