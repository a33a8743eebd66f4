// Package proxy is the sidecar's data plane assembled: it compiles a
// validated config into an immutable snapshot (listeners' route tables,
// clusters, filter chains, metric handles), swaps snapshots atomically on
// reload, and runs each request through filters, routing, load balancing and
// the retry loop. Protocol details stay in proxy/listener; balancing in
// proxy/cluster; matching in proxy/route; Wasm in proxy/wasm.
package proxy
