// Package telemetry owns the control plane's mesh-wide metrics view: it
// scrapes every sidecar's /stats/prometheus (the address each sidecar
// reports when it watches), keeps the last two samples per sidecar, and
// aggregates weft_requests_total and weft_request_duration_seconds by
// destination service into requests/s, error rate and p50/p99.
//
// It must not change traffic or configs, and it scrapes only addresses that
// sidecars reported.
package telemetry
