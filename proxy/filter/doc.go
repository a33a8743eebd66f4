// Package filter owns the filter chain the hot path calls: the Stream a
// request lives in while filters see it, the Filter interface that Wasm and
// native filters implement, and the Chain that runs them in order (request
// callbacks forwards, response callbacks backwards, like Envoy's decoder and
// encoder filters). It must not know about Wasm, routing or clusters.
package filter
