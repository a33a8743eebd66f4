// Package telemetry owns what the proxy tells about the traffic it carries:
// Prometheus metrics (request counts by listener/route/cluster/status
// class, latency histograms, active requests, retries, timeouts) and the
// access log. Metric handles are resolved once per config snapshot so the
// hot path only does atomic adds. It must not decide anything about
// traffic.
package telemetry
