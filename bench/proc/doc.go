// Package proc owns the benchmark's subprocesses: starting them in their own
// process group (optionally pinned to CPUs with taskset), stopping and
// reaping the whole group, and measuring the group's CPU time and peak RSS
// from /proc. It is Linux only, like the benchmarks it serves; it builds on
// other Unixes, and on Windows, where Start refuses (no process groups).
//
// It must not know what the processes are: proxies, peers, upstreams and
// load generators are all just a Spec here.
package proc
