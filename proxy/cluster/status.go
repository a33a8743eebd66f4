package cluster

import (
	"sync/atomic"
	"time"
)

// Stats are a cluster's counters, for the telemetry package to export.
// Every field only grows; read with Load.
type Stats struct {
	// Ejections counts endpoints ejected by outlier detection.
	Ejections atomic.Uint64
	// EjectionsOverflow counts ejections skipped because
	// max_ejection_percent of the cluster was already ejected, or the
	// endpoint was the last usable one.
	EjectionsOverflow atomic.Uint64
	// HealthCheckFailures counts failed active health checks.
	HealthCheckFailures atomic.Uint64
	// RejectedConnections counts connections refused by max_connections.
	RejectedConnections atomic.Uint64
	// RejectedPending counts requests refused by max_pending.
	RejectedPending atomic.Uint64
	// RejectedRequests counts requests refused by max_requests.
	RejectedRequests atomic.Uint64
	// RejectedRetries counts retries refused by max_retries.
	RejectedRetries atomic.Uint64
	// ConnectionsOpened counts upstream connections opened for requests
	// (health checks not included).
	ConnectionsOpened atomic.Uint64
	// DNSFailures counts failed or empty DNS refreshes.
	DNSFailures atomic.Uint64
	// StaleConnsClosed counts pooled HTTP/1.1 connections found closed by
	// the upstream (or holding bytes nobody asked for) when taken for a
	// request, and closed unused (pooledconn.go).
	StaleConnsClosed atomic.Uint64
	// PooledConnRetries counts requests sent again on another connection
	// because the reused one they went on broke before any byte of the
	// answer came (pooledconn.go, and net/http's transport by its own
	// rule: countResends), or because an HTTP/2 upstream did not process
	// their stream (h2client): not the route policy's retries.
	PooledConnRetries atomic.Uint64
}

// ClusterStatus is a snapshot of a cluster for the admin /clusters page
// and metrics.
type ClusterStatus struct {
	Name string `json:"name"`
	LB   string `json:"lb"`
	// Panic is true when too few endpoints are usable and the balancer
	// spreads over all of them.
	Panic bool `json:"panic"`
	// Requests, Retries, Pending and Connections are the circuit breakers'
	// current counts.
	Requests    int64            `json:"requests"`
	Retries     int64            `json:"retries"`
	Pending     int64            `json:"pending"`
	Connections int64            `json:"connections"`
	Endpoints   []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is a snapshot of one endpoint.
type EndpointStatus struct {
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	// Healthy is the active health check's verdict (true without checks).
	Healthy bool `json:"healthy"`
	// Ejected is set while outlier detection holds the endpoint out;
	// EjectedUntil says until when.
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// Active is the number of requests in flight; Total all requests sent;
	// Failures the failed attempts reported.
	Active   int64  `json:"active"`
	Total    uint64 `json:"total"`
	Failures uint64 `json:"failures"`
	// Conns is the number of open pooled connections.
	Conns int64 `json:"conns"`
}

// Status returns a snapshot of the cluster and its current endpoints.
func (c *Cluster) Status() ClusterStatus {
	// Health and ejection change under c.mu together with the view Pick
	// reads: holding it, the status never shows a change the balancer has
	// not taken yet.
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.view.Load()
	st := ClusterStatus{
		Name:        c.name,
		LB:          c.lbName,
		Panic:       v.panic,
		Requests:    c.breakers.requests.Load(),
		Retries:     c.breakers.retries.Load(),
		Pending:     c.breakers.pending.Load(),
		Connections: c.breakers.connections.Load(),
		Endpoints:   make([]EndpointStatus, 0, len(v.set.endpoints)),
	}
	for _, e := range v.set.endpoints {
		es := EndpointStatus{
			Address:  e.addr,
			Weight:   int(e.weight),
			Healthy:  !e.unhealthy.Load(),
			Ejected:  e.ejected.Load(),
			Active:   e.active.Load(),
			Total:    e.total.Load(),
			Failures: e.failures.Load(),
			Conns:    e.conns.Load(),
		}
		if u := e.ejectedUntil.Load(); es.Ejected && u != 0 {
			es.EjectedUntil = time.Unix(0, u)
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	return st
}
