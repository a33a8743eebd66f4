// Package loadgen owns the benchmark load generator: closed-loop load (N
// connections, each a goroutine sending back to back over keep-alive) and
// open-loop load (a fixed request rate spread over workers, latency measured
// from each request's intended send time so that coordinated omission is
// corrected), recorded in HDR histograms with warm-up excluded.
//
// Every run is bounded by a duration and a request count. The package must
// not start servers or processes, and it must not decide what a result means:
// it measures and returns numbers; bench and bench/report interpret them.
package loadgen
