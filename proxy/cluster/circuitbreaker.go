package cluster

import "sync/atomic"

// breakers holds the cluster-wide circuit-breaker counts. Each is a single
// atomic: acquiring is one add, and a refused acquire undoes it, so a
// limit can be overshot only for the instant between the two.
type breakers struct {
	connections atomic.Int64 // open upstream connections (endpoint.dial)
	pending     atomic.Int64 // requests waiting for a pooled connection (Endpoint.Do)
	requests    atomic.Int64 // requests in flight (AcquireRequest)
	retries     atomic.Int64 // retries in flight (AcquireRetry)
}

// AcquireRequest admits one request to the cluster, or returns false (and
// counts a rejection) when max_requests are already in flight. Every true
// must be matched by one ReleaseRequest.
func (c *Cluster) AcquireRequest() bool {
	if c.breakers.requests.Add(1) > c.s.MaxRequests {
		c.breakers.requests.Add(-1)
		c.stats.RejectedRequests.Add(1)
		return false
	}
	return true
}

// ReleaseRequest ends a request admitted by AcquireRequest.
func (c *Cluster) ReleaseRequest() { c.breakers.requests.Add(-1) }

// AcquireRetry admits one retry, or returns false (and counts a rejection)
// when max_retries are already in flight. Every true must be matched by one
// ReleaseRetry.
func (c *Cluster) AcquireRetry() bool {
	if c.breakers.retries.Add(1) > c.s.MaxRetries {
		c.breakers.retries.Add(-1)
		c.stats.RejectedRetries.Add(1)
		return false
	}
	return true
}

// ReleaseRetry ends a retry admitted by AcquireRetry.
func (c *Cluster) ReleaseRetry() { c.breakers.retries.Add(-1) }
