// Command telemetry is Weft's telemetry filter: request counters by route
// and status, request and response size histograms, latency, and sampled
// request logging with chosen headers, all through the Proxy-Wasm metrics
// and logging ABI. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o telemetry.wasm ./plugins/telemetry
//
// It owns the filter's metrics and sampled log lines. It must not change
// requests or responses, or log bodies.
package main
