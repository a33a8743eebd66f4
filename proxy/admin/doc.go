// Package admin owns the sidecar's admin server (default 127.0.0.1:9901):
// readiness and liveness, the config in force, cluster and endpoint state,
// Prometheus metrics and pprof. It reads what the proxy exposes through a
// small interface and never changes traffic.
package admin
