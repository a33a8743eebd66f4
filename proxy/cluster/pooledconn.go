package cluster

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Pooled connections the upstream closed while they sat idle. Every
// keep-alive client meets this race: the upstream's idle timeout (or a
// restart) closes a connection in the pool just as a request is taken to
// it. Two defences, both in the HTTP/1.1 exchange (doH1), for Do and
// DoStream alike:
//
//   - A connection that sat idle in the pool for idleCheckAfter or more is
//     checked when it is taken: one non-blocking peek at its socket
//     (peerGone). A connection the upstream closed (FIN) or reset (RST),
//     or one that holds bytes nobody asked for (a 408 an upstream wrote
//     before closing would otherwise be read as the next request's
//     answer), is closed unused and the next one is taken, or a new one
//     dialed. Nothing of the request was read or sent yet, so this holds
//     for any method and any body. Counted in Stats.StaleConnsClosed. A
//     connection reused sooner is not checked: the peek is a system call
//     (about 0.45µs of CPU, 2% of a proxied request), and an upstream's
//     idle timeout is seconds long, so under load, when connections are
//     reused within milliseconds, it would cost every request and find
//     nothing.
//   - The close can still land after the check, while the request is
//     written. A request that then fails on a reused connection before any
//     byte of its answer arrived (the write failed, or the read found the
//     connection closed or reset) is sent once more, on the next
//     connection the pool gives (checked the same way, else dialed) —
//     when it is replayable: GET, HEAD, OPTIONS, TRACE, PUT or DELETE
//     with no body or a body held whole in memory (a body streaming from
//     the client is read once: once its first bytes were taken, it is
//     not sent again). Counted in Stats.PooledConnRetries.
//
// That second try stays on the same endpoint and inside Do: the failure
// says the connection was stale, not that the endpoint is unhealthy, so it
// does not reach Report (outlier detection), the route's retry policy
// (attempts, budget, backoff) or another endpoint. A request whose first
// try was on a new connection is never sent again here: an upstream that
// closes fresh connections on a request is broken, not racing a timeout
// (net/http's Transport draws the same line). If the second try fails too,
// its error is the one returned, and the route's policy decides.

// upstreamConn is the countedConn under a pooled connection (plain or
// TLS), nil when there is none (a connection not dialed by the endpoint).
func upstreamConn(cn net.Conn) *countedConn {
	switch c := cn.(type) {
	case *countedConn:
		return c
	case *tls.Conn:
		cc, _ := c.NetConn().(*countedConn)
		return cc
	}
	return nil
}

// idleCheckAfter is how long a connection sits idle in the pool before
// it is checked when taken.
const idleCheckAfter = 10 * time.Millisecond

// epoch is where pooled's monotonic readings start.
var epoch = time.Now()

// pooled records that a connection goes back to the pool now.
func pooled(cn net.Conn) {
	if cc := upstreamConn(cn); cc != nil {
		cc.idleFrom = time.Since(epoch) // the monotonic clock only
	}
}

// takeConn readies a connection just taken from the pool for a request.
// It reports whether an exchange ran on it before (reused) and whether it
// is usable: false for a reused one that sat idle for idleCheckAfter and
// that peerGone finds closed.
func takeConn(cn net.Conn) (reused, usable bool) {
	cc := upstreamConn(cn)
	if cc == nil {
		return false, true
	}
	if !cc.used {
		cc.used = true
		return false, true
	}
	if time.Since(epoch)-cc.idleFrom < idleCheckAfter {
		return true, true
	}
	_, isTLS := cn.(*tls.Conn)
	return true, !cc.peerGone(isTLS)
}

// replayable reports whether req may be sent again after a try that got
// no answer: an idempotent method, and its body (if any) in req, not
// streaming from the client.
func replayable(req *fasthttp.Request, streamed bool) bool {
	if streamed {
		return false
	}
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace() || h.IsPut() || h.IsDelete()
}
