package cluster

import (
	"net/http/httptrace"
	"sync"
	"time"
)

// Per-try timeouts start where Envoy's do (its router's
// UpstreamRequest::onPoolReady and setupPerTryTimeout): once the try has a
// usable connection and its request has been sent whole. Getting that
// connection (the wait for a pooled one, the dial and the TLS handshake)
// is bounded by connect_timeout and the route's deadline only; a dial that
// does not finish is the endpoint's connect failure, not a per-try
// timeout. A request body streaming from the client is not the
// upstream's time either: the per-try bound starts after its last byte
// went. Where each transport starts it:
//
//   - HTTP/1.1 (doH1): once the pool handed over a connection (pooled, or
//     dialed and, over TLS, handshaken), then after the streamed body if
//     there is one.
//   - net/http's transport and weft's HTTP/2 client: when the transport
//     reports the request written (httptrace's WroteRequest), which it
//     does once it had a connection and sent the headers and the whole
//     body. A TryTimer arms then.
//
// Every bound is a deadline computed once: a try without per_try_timeout
// reads the clock no more than before.

// TryTimer is the per-try bound of a try on a streaming transport: armed
// by Sent (the request was written whole on a connection), it calls fire
// once perTry has passed since, unless Stop came first. Sent may come on
// another goroutine, before or after Stop (net/http's writer reports a
// body it is still sending after the answer arrived): after Stop it does
// nothing.
type TryTimer struct {
	perTry time.Duration
	fire   func()
	mu     sync.Mutex
	t      *time.Timer
	done   bool
}

// NewTryTimer returns a per-try timer of perTry that calls fire.
func NewTryTimer(perTry time.Duration, fire func()) *TryTimer {
	return &TryTimer{perTry: perTry, fire: fire}
}

// Sent arms the timer (the first call only).
func (t *TryTimer) Sent() {
	t.mu.Lock()
	if !t.done && t.t == nil {
		t.t = time.AfterFunc(t.perTry, t.fire)
	}
	t.mu.Unlock()
}

// Stop disarms the timer for good and reports whether it had fired.
func (t *TryTimer) Stop() (fired bool) {
	t.mu.Lock()
	t.done = true
	fired = t.t != nil && !t.t.Stop()
	t.mu.Unlock()
	return fired
}

// wroteRequest is httptrace's WroteRequest hook: a request written
// without error arms the timer.
func (t *TryTimer) wroteRequest(i httptrace.WroteRequestInfo) {
	if i.Err == nil {
		t.Sent()
	}
}
