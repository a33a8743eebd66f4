// Package listener owns the downstream sockets: fasthttp servers with their
// limits (header and body size, read/write/idle timeouts, max connections),
// TLS, and graceful shutdown that drains in-flight requests. It knows
// nothing of routes or clusters: it hands each request to a handler once
// its headers are read, the body still streaming from the connection
// (the handler bounds its size).
package listener
