// Package bench owns `weft bench`, the benchmark harness: scenarios (direct,
// weft, weft with Wasm filters and the first-party plugins, tracing, retries
// over a flaky upstream, an upstream killed with SIGKILL under load (a
// Fault, with the time to recover), two sidecars chained over mTLS, peer proxies such
// as nginx, HAProxy and Caddy, and `weft bench filter` for a user's own
// filter), their setup and
// teardown, the measured run of each through bench/loadgen, CPU and memory
// of the proxy processes through bench/proc, and the report through
// bench/report. Subpackages: loadgen (load and latency histograms), upstream
// (the built-in upstream server), proc (subprocesses and /proc measurement),
// report (markdown, JSON, SVG).
//
// A scenario is a small function (see Scenario and Env): adding one must not
// need changes anywhere else but DefaultScenarios.
//
// It must not assert a speed: a quick run checks only that the harness works
// (requests were answered, none failed; for a scenario whose failures are
// the point, that its error rate is where it should be). It must send traffic only to
// loopback, bound every load loop in time and count, and leave no process
// behind when it returns, fails or is interrupted.
package bench
