// Package report owns how a benchmark run is written down: the Report data
// (also its JSON form), a markdown table, and hand-written SVG charts
// (latency percentiles and throughput per scenario, CPU per request) that a
// person opens in a browser, no JavaScript.
//
// It must not measure anything or start anything: it renders what bench
// hands it, and it must never judge a number as good or bad.
package report
