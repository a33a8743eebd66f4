// Package refproxy holds two reference HTTP/1.1 reverse proxies for the
// benchmark harness, so that weft's CPU per request can be read against
// what its building blocks cost without weft: a bare fasthttp proxy (the
// server and client weft is built on, doing nothing else) and a
// single-threaded epoll event loop in Go (the shape nginx and HAProxy
// have). They are measuring sticks, not products: keep-alive on both sides,
// one upstream connection per client connection, Content-Length bodies
// only (a chunked message closes the connection), heads up to 16 KiB and
// bodies up to 64 KiB.
package refproxy

import (
	"context"
	"fmt"
	"net"
)

// Kinds are the reference proxies Serve runs.
var Kinds = []string{"epoll", "fasthttp"}

// Serve proxies HTTP/1.1 from listen to upstream (both host:port) with the
// reference proxy kind until ctx ends. ready, if not nil, gets the bound
// address once the proxy accepts.
func Serve(ctx context.Context, kind, listen, upstream string, ready func(net.Addr)) error {
	if _, err := net.ResolveTCPAddr("tcp", upstream); err != nil || upstream == "" {
		return fmt.Errorf("refproxy: upstream %q: want host:port", upstream)
	}
	switch kind {
	case "epoll":
		return serveEpoll(ctx, listen, upstream, ready)
	case "fasthttp":
		return serveFasthttp(ctx, listen, upstream, ready)
	}
	return fmt.Errorf("refproxy: kind %q: want one of %v", kind, Kinds)
}
