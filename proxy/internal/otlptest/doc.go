// Package otlptest owns a real OTLP/HTTP trace receiver for tests: an
// HTTP server on 127.0.0.1 that decodes each POST /v1/traces body as the
// protobuf ExportTraceServiceRequest and keeps the spans. It must not be
// imported by non-test code.
package otlptest
