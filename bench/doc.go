// Package bench owns `weft bench`, the benchmark harness: scenarios (direct,
// weft, peer proxies such as nginx, HAProxy and Caddy), their setup and
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
// (requests were answered, none failed). It must send traffic only to
// loopback, bound every load loop in time and count, and leave no process
// behind when it returns, fails or is interrupted.
package bench
