// Package tcpproxy owns L4 forwarding for listeners with protocol: tcp: the
// accept loop of a tcp listener (its socket, the per-connection TLS
// handshake when the listener's tls asks for it, max_connections), the
// per-connection decision (authorization by peer SPIFFE ID and port, an
// endpoint picked by the cluster's load balancer, a dial through
// cluster.Endpoint.Dial so circuit breakers, connect_timeout and the
// cluster's mTLS apply), the byte splice in both directions (bounded
// pooled buffers, half-close passed on, idle timeout, abort on error),
// and the connection metrics and access log line.
//
// Network filters (filters.go: a listener's ConnFilterFactory list, Wasm
// network filters behind the proxy's glue) see the bytes each way and may
// hold them back, rewrite them or close the connection.
//
// It must not parse what it forwards (no HTTP), know what a filter runs, verify
// certificates or build TLS configs itself (proxy/identity and the
// listener's TLS wrapping do), choose endpoints outside the cluster's
// balancer, or keep a connection's goroutines past Shutdown.
package tcpproxy
