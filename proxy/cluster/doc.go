// Package cluster owns Weft's upstream clusters: their endpoints (static,
// or resolved from DNS and refreshed), the load balancers that choose among
// them, the keep-alive connection pool of each endpoint, active health
// checks, passive outlier detection and the cluster-wide circuit breakers.
//
// New compiles one config.Cluster (defaults applied, nonsense refused) into
// a *Cluster; Start launches its background work and Close stops all of it.
// A Cluster's Key digests its normalized config, so a config swap can keep
// an unchanged cluster running with its state.
//
// # Data path
//
// Per request the proxy calls AcquireRequest, HashKey (ring_hash), Pick,
// Endpoint.DoTry (or RoundTripTry for a stream), Endpoint.Report and
// ReleaseRequest; a retry adds
// AcquireRetry/ReleaseRetry and passes the failed endpoint to Pick as
// exclude. None of these allocate or take a lock shared by requests: Pick
// reads an immutable view (published with an atomic pointer) that is
// rebuilt whenever membership, health or ejection changes.
//
// Load balancers, one per file: round_robin.go (smooth weighted round
// robin from a precomputed schedule), least_request.go (power of two
// weighted choices by active requests), random.go (weighted) and
// ringhash.go (consistent hash ring). All skip unhealthy and ejected
// endpoints, except in panic mode: when fewer than panic_threshold percent
// of the endpoints are usable, they balance across all of them.
//
// # Connection pools and circuit breakers
//
// Each endpoint has one fasthttp.HostClient. The breakers map onto it so:
//
//   - max_conns_per_endpoint is HostClient.MaxConns.
//   - max_connections (cluster-wide) is enforced when a connection is
//     dialed: a request needing a new connection while the cluster holds
//     max_connections fails with ErrOverflow (Classify: Overflow) and counts
//     in Stats.RejectedConnections. Idle connections count until
//     idle_timeout closes them.
//   - max_pending counts requests beyond an endpoint's pool capacity, that
//     is, waiting for a free connection (HostClient.MaxConnWaitTimeout is
//     set, so they wait until their deadline, at most 30s). Admission is
//     decided as a request enters Do: when max_pending requests already
//     wait, it fails with ErrOverflow and counts in Stats.RejectedPending.
//   - max_requests and max_retries are plain atomic counters the proxy
//     acquires and releases around each request and retry.
//
// Requests go through the pool's connections in doH1 (HostClient.Do and
// its retries are not used). A connection that sat idle 10ms or more is
// peeked at when taken and closed unused if the upstream closed it; a
// replayable request that breaks on a reused connection before any byte of
// its answer is sent once more on the next one (pooledconn.go). Every
// other retry is the route policy's.
//
// # Active health checks
//
// healthcheck.go runs one goroutine per endpoint: an HTTP GET of the
// configured path on a connection of its own, or (grpchealth.go) a
// grpc.health.v1.Health/Check call over the endpoint's HTTP/2 transport,
// its two protobuf messages encoded by hand so the proxy does not import
// grpc-go. Thresholds of consecutive results move the endpoint out of the
// view and back.
//
// # Failures
//
// Classify sorts Do's errors into ConnectFailure, Timeout, Reset, Overflow
// and Other for the retry policy. Report feeds outlier detection: 5xx
// statuses, and connect failures, timeouts and resets (as gateway errors);
// consecutive_5xx or consecutive_gateway_errors in a row eject the
// endpoint for base_ejection_time × times ejected (at most
// max_ejection_time), never more than max_ejection_percent of the cluster
// (but at least one endpoint).
//
// # What this package must not do
//
// It does not route, rewrite requests, retry, or apply timeouts of its own
// beyond connect_timeout (the caller passes the route's deadline and the
// per-try timeout, which starts once a try has its connection: pertry.go), and it does not
// speak any wire protocol but HTTP/1.1 (fasthttp) and HTTP/2 (net/http's
// transport, transport.go); the gRPC it knows is the health check's. It
// exports counters (Stats, Status) but registers no metrics and serves no
// admin page. It never logs per request.
package cluster
