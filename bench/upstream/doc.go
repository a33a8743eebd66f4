// Package upstream owns the benchmark's built-in upstream: a fasthttp server
// answering with fixed or sized bodies, optionally after a fixed delay, with
// an optional share of injected failures ("flaky") and an optional one-off
// stall. It runs in-process (Start) or as the `weft bench upstream`
// subprocess (Serve), so it can be pinned to a CPU.
//
// It must stay a plain, predictable server: no logging per request, no
// behaviour that depends on anything but its Config and the request's
// `size` query parameter.
package upstream
