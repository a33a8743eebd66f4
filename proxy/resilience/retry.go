package resilience

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// Failure is how one try ended, as the retry policy sees it.
type Failure uint8

const (
	// NoFailure: an upstream response arrived (its status decides).
	NoFailure Failure = iota
	// ConnectFailure: the endpoint could not be reached.
	ConnectFailure
	// Reset: the connection was closed or reset before a whole response.
	Reset
	// Timeout: the per-try timeout fired.
	Timeout
	// NoEndpoint: no healthy endpoint was available.
	NoEndpoint
	// Overflow: a circuit breaker refused the try; never retried.
	Overflow
)

// retry_on bits.
const (
	on5xx uint8 = 1 << iota
	onGatewayError
	onConnectFailure
	onReset
	onRetriableStatus
)

// Policy is a compiled retry policy. The zero value (and a nil *Policy)
// never retries.
type Policy struct {
	attempts      int
	on            uint8
	statuses      [8]uint16 // retriable status codes (small, scanned linearly)
	nStatuses     int
	perTry        time.Duration
	base, max     time.Duration
	nonIdempotent bool
	budgetPercent float64
	budgetMinConc int64
	// grpc has bit n set when gRPC status n is retried (retry_on
	// cancelled, deadline-exceeded, internal, resource-exhausted,
	// unavailable: Envoy's names).
	grpc uint32
}

// gRPC retry conditions and the status codes they name.
var grpcRetryOn = map[string]uint32{
	"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14,
}

// Compile turns a RetryPolicy into a Policy. nil or a disabled policy
// gives nil (no retries).
func Compile(c *config.RetryPolicy) (*Policy, error) {
	if c == nil || c.Disabled {
		return nil, nil
	}
	p := &Policy{
		attempts:      c.Attempts,
		perTry:        c.PerTryTimeout.D(),
		base:          c.BackoffBase.D(),
		max:           c.BackoffMax.D(),
		nonIdempotent: c.RetryNonIdempotent,
		budgetPercent: c.BudgetPercent,
		budgetMinConc: int64(c.BudgetMinConcurrency),
	}
	if p.attempts == 0 {
		p.attempts = 2
	}
	if p.base == 0 {
		p.base = 25 * time.Millisecond
	}
	if p.max == 0 {
		p.max = 10 * p.base
	}
	if p.budgetPercent == 0 {
		p.budgetPercent = 20
	}
	if p.budgetMinConc == 0 {
		// Like Linkerd's minimum of 10 retries a second: a quiet service
		// may still retry a handful of requests at once.
		p.budgetMinConc = 10
	}
	on := c.On
	if len(on) == 0 {
		on = []string{"5xx", "connect-failure", "reset"}
	}
	for _, o := range on {
		switch o {
		case "5xx":
			p.on |= on5xx
		case "gateway-error":
			p.on |= onGatewayError
		case "connect-failure":
			p.on |= onConnectFailure
		case "reset":
			p.on |= onReset
		case "retriable-status-codes":
			p.on |= onRetriableStatus
		default:
			code, ok := grpcRetryOn[o]
			if !ok {
				return nil, fmt.Errorf("retry.on: unknown condition %q (want 5xx, gateway-error, connect-failure, reset, retriable-status-codes, or a gRPC status: cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)", o)
			}
			p.grpc |= 1 << code
		}
	}
	if len(c.RetriableStatusCodes) > len(p.statuses) {
		return nil, fmt.Errorf("retry.retriable_status_codes: at most %d codes", len(p.statuses))
	}
	for i, s := range c.RetriableStatusCodes {
		p.statuses[i] = uint16(s)
	}
	p.nStatuses = len(c.RetriableStatusCodes)
	if p.nStatuses > 0 {
		p.on |= onRetriableStatus
	}
	return p, nil
}

// Attempts is the number of retries allowed after the first try.
func (p *Policy) Attempts() int {
	if p == nil {
		return 0
	}
	return p.attempts
}

// PerTryTimeout is the bound on one try (0: only the route timeout).
func (p *Policy) PerTryTimeout() time.Duration {
	if p == nil {
		return 0
	}
	return p.perTry
}

// MethodAllowed reports whether a request with this method may be retried:
// idempotent methods always, others only when configured.
func (p *Policy) MethodAllowed(method []byte) bool {
	if p == nil {
		return false
	}
	if p.nonIdempotent {
		return true
	}
	switch string(method) { // no allocation: the compiler special-cases this conversion
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// Retriable reports whether a try that ended with failure f (or, for
// NoFailure, with the status) should be retried.
func (p *Policy) Retriable(f Failure, status int) bool {
	if p == nil {
		return false
	}
	switch f {
	case ConnectFailure, NoEndpoint:
		return p.on&(onConnectFailure|onGatewayError|on5xx) != 0
	case Reset:
		return p.on&(onReset|onGatewayError|on5xx) != 0
	case Timeout:
		// A per-try timeout is retried like Envoy does for 5xx and gateway errors.
		return p.on&(on5xx|onGatewayError) != 0
	}
	if status >= 500 && p.on&on5xx != 0 {
		return true
	}
	if (status == 502 || status == 503 || status == 504) && p.on&onGatewayError != 0 {
		return true
	}
	if p.on&onRetriableStatus != 0 {
		for i := 0; i < p.nStatuses; i++ {
			if int(p.statuses[i]) == status {
				return true
			}
		}
	}
	return false
}

// GRPC reports whether the policy retries on any gRPC status: gRPC calls
// (POST, not idempotent by method) are then retried by status, as the
// operator asked for.
func (p *Policy) GRPC() bool { return p != nil && p.grpc != 0 }

// RetriableGRPC reports whether a call that ended with gRPC status code
// (from a trailers-only answer) should be retried.
func (p *Policy) RetriableGRPC(code int) bool {
	return p != nil && code > 0 && code < 32 && p.grpc&(1<<uint(code)) != 0
}

// Backoff is the wait before retry n (1-based): full jitter over an
// exponentially growing window, capped at the policy's maximum.
func (p *Policy) Backoff(n int) time.Duration {
	if p == nil || n <= 0 {
		return 0
	}
	w := p.base
	for i := 1; i < n && w < p.max; i++ {
		w *= 2
	}
	if w > p.max {
		w = p.max
	}
	return time.Duration(rand.Int64N(int64(w) + 1))
}

// Budget bounds concurrent retries to a share of concurrent requests, so
// that an outage does not multiply load (Envoy's and Linkerd's retry budget).
// One Budget belongs to one cluster; it is safe for concurrent use.
type Budget struct {
	active  atomic.Int64
	retries atomic.Int64
}

// StartRequest counts an active request; call EndRequest when it ends.
func (b *Budget) StartRequest() { b.active.Add(1) }

// EndRequest uncounts an active request.
func (b *Budget) EndRequest() { b.active.Add(-1) }

// Active is the number of requests in flight.
func (b *Budget) Active() int64 { return b.active.Load() }

// TryRetry admits one retry under p's budget; call EndRetry after it.
func (b *Budget) TryRetry(p *Policy) bool {
	if p == nil {
		return false
	}
	limit := int64(float64(b.active.Load()) * p.budgetPercent / 100)
	if limit < p.budgetMinConc {
		limit = p.budgetMinConc
	}
	if b.retries.Add(1) > limit {
		b.retries.Add(-1)
		return false
	}
	return true
}

// EndRetry uncounts a retry admitted by TryRetry.
func (b *Budget) EndRetry() { b.retries.Add(-1) }
