package config

import "time"

// Defaults other packages compile against when they handle a config part on
// its own (a route table built from one listener). The rest are documented
// in docs/config.md and applied by ApplyDefaults.
const (
	// DefaultRouteTimeout bounds a forwarded request, all retries included.
	DefaultRouteTimeout = 15 * time.Second
	// DefaultRedirectStatus is the status of a redirect with no status_code.
	DefaultRedirectStatus = 301
	// DefaultMirrorPercent is the share of requests a mirror copies.
	DefaultMirrorPercent = 100.0
	// DefaultAdminAddress is where the admin server listens.
	DefaultAdminAddress = "127.0.0.1:9901"
)

// The remaining defaults, in schema order.
const (
	defaultDirection       = "outbound"
	defaultMaxHeaderBytes  = 64 << 10
	defaultMaxHeadersCount = 100
	defaultMaxBodyBytes    = 4 << 20
	defaultReadTimeout     = 30 * time.Second
	defaultWriteTimeout    = 30 * time.Second
	defaultIdleTimeout     = 90 * time.Second
	defaultMaxConnections  = 10000

	defaultAccessLogPath   = "stdout"
	defaultAccessLogFormat = "json"

	defaultRetryAttempts        = 2
	defaultBackoffBase          = 25 * time.Millisecond
	defaultBackoffMaxFactor     = 10
	defaultBudgetPercent        = 20.0
	defaultBudgetMinConcurrency = 10

	defaultH2MaxStreams       = 250
	defaultH2StreamWindow     = 1 << 20
	defaultH2ConnWindow       = 4 << 20
	defaultH2KeepaliveTimeout = 20 * time.Second

	defaultLB                  = "round_robin"
	defaultClusterProtocol     = "http1"
	defaultConnectTimeout      = time.Second
	defaultMaxConnsPerEndpoint = 1024
	defaultClusterIdleTimeout  = 60 * time.Second
	defaultPanicThreshold      = 50.0
	defaultEndpointWeight      = 1
	defaultDNSRefresh          = 30 * time.Second

	defaultHealthPath               = "/healthz"
	defaultHealthInterval           = 5 * time.Second
	defaultHealthTimeout            = time.Second
	defaultHealthyThreshold         = 2
	defaultUnhealthyThreshold       = 3
	defaultConsecutive5xx           = 5
	defaultOutlierInterval          = 10 * time.Second
	defaultBaseEjectionTime         = 30 * time.Second
	defaultMaxEjectionTime          = 300 * time.Second
	defaultMaxEjectionPercent       = 10.0
	defaultCircuitBreakerLimit      = 1024
	defaultCircuitBreakerMaxRetries = 1024 // loose like Istio's; the retry budget guards

	defaultTracingService       = "weft"
	defaultTracingSampling      = 100.0
	defaultTracingForceHeader   = "x-weft-trace"
	defaultTracingBatchSize     = 512
	defaultTracingQueueSize     = 4096
	defaultTracingFlushInterval = time.Second
	defaultTracingExportTimeout = 5 * time.Second

	defaultFailurePolicy   = "fail_closed"
	defaultMemoryLimitMiB  = 64
	defaultCallbackTimeout = 50 * time.Millisecond
	defaultFilterBodyBytes = 1 << 20
)

// defaultRetryOn is what a retry policy with no "on" retries.
var defaultRetryOn = []string{"gateway-error", "connect-failure", "reset"}

// DefaultRetryOn is what a route with no retry policy retries: tries that
// got no answer. A connect failure never reached the upstream, so it is
// retried whatever the method (on another endpoint, see docs/config.md); a
// reset only for idempotent methods, as RFC 9110 §9.2.2 allows. An answer,
// even a 503, is the upstream's and passes through.
var DefaultRetryOn = []string{"connect-failure", "reset"}

// ApplyDefaults fills every unset (zero) field that has a default, in place.
// It is idempotent. Defaults that depend on the machine (a filter's
// pool_size, GOMAXPROCS) are left at zero for the runtime to decide, so a
// config defaulted by the control plane means the same on every sidecar.
// Parse calls it; call it on a Config built in code or decoded from JSON.
func (c *Config) ApplyDefaults() {
	c.applyOwnDefaults()
	for i := range c.Listeners {
		c.Listeners[i].applyDefaults()
	}
	for i := range c.Clusters {
		c.Clusters[i].applyDefaults()
	}
	for i := range c.Filters {
		c.Filters[i].applyDefaults()
	}
	for i := range c.WasmServices {
		c.WasmServices[i].applyServiceDefaults()
	}
}

// applyOwnDefaults defaults the config's fields that are not lists.
func (c *Config) applyOwnDefaults() {
	setStr(&c.Admin.Address, DefaultAdminAddress)
	c.Tracing.applyDefaults(c.Node.ID)
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}

func setFloat(p *float64, v float64) {
	if *p == 0 {
		*p = v
	}
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func (t *Tracing) applyDefaults(nodeID string) {
	setStr(&t.ServiceName, nodeID)
	setStr(&t.ServiceName, defaultTracingService)
	if t.SamplingPercent == nil {
		p := defaultTracingSampling
		t.SamplingPercent = &p
	}
	setStr(&t.ForceHeader, defaultTracingForceHeader)
	setInt(&t.BatchSize, defaultTracingBatchSize)
	setInt(&t.QueueSize, defaultTracingQueueSize)
	setDur(&t.FlushInterval, defaultTracingFlushInterval)
	setDur(&t.ExportTimeout, defaultTracingExportTimeout)
}

func (l *Listener) applyDefaults() {
	l.applyOwnDefaults()
	for i := range l.VirtualHosts {
		l.VirtualHosts[i].applyDefaults()
	}
}

// applyOwnDefaults defaults a listener's fields but its virtual hosts.
func (l *Listener) applyOwnDefaults() {
	setStr(&l.Direction, defaultDirection)
	setInt(&l.HTTP2.MaxConcurrentStreams, defaultH2MaxStreams)
	setInt(&l.HTTP2.InitialStreamWindowSize, defaultH2StreamWindow)
	setInt(&l.HTTP2.InitialConnectionWindowSize, defaultH2ConnWindow)
	setInt(&l.HTTP2.MaxHeaderListSize, orIntDefault(l.Limits.MaxHeaderBytes, defaultMaxHeaderBytes))
	setDur(&l.HTTP2.KeepaliveTimeout, defaultH2KeepaliveTimeout)
	setStr(&l.HTTP2.Server, H2ServerWeft)
	setInt(&l.Limits.MaxHeaderBytes, defaultMaxHeaderBytes)
	setInt(&l.Limits.MaxHeadersCount, defaultMaxHeadersCount)
	setInt(&l.Limits.MaxBodyBytes, defaultMaxBodyBytes)
	setDur(&l.Limits.ReadTimeout, defaultReadTimeout)
	setDur(&l.Limits.WriteTimeout, defaultWriteTimeout)
	setDur(&l.Limits.IdleTimeout, defaultIdleTimeout)
	setInt(&l.Limits.MaxConnections, defaultMaxConnections)
	setStr(&l.AccessLog.Path, defaultAccessLogPath)
	setStr(&l.AccessLog.Format, defaultAccessLogFormat)
	l.applySecurityDefaults()
}

func (vh *VirtualHost) applyDefaults() {
	for i := range vh.Routes {
		vh.Routes[i].applyDefaults()
	}
}

func (r *Route) applyDefaults() {
	r.applyOwnDefaults()
	if a := r.Route; a != nil {
		a.applyDefaults()
	}
}

// applyOwnDefaults defaults a route's fields but its forwarding action.
func (r *Route) applyOwnDefaults() {
	if m := &r.Match; m.Prefix == "" && m.Path == "" && m.Regex == "" {
		if g := m.GRPC; g != nil {
			// A gRPC match is a path match on a gRPC content type.
			if g.Method != "" {
				m.Path = g.Path()
			} else {
				m.Prefix = g.Path()
			}
			m.Headers = append(m.Headers, HeaderMatcher{Name: "content-type", Prefix: "application/grpc"})
		} else {
			m.Prefix = "/"
		}
	}
	if r.Redirect != nil {
		setInt(&r.Redirect.StatusCode, DefaultRedirectStatus)
	}
}

// applyDefaults defaults a forwarding action; its weighted clusters have
// none.
func (a *RouteAction) applyDefaults() {
	setDur(&a.Timeout, DefaultRouteTimeout)
	if a.Mirror != nil {
		setFloat(&a.Mirror.Percent, DefaultMirrorPercent)
	}
	if a.Retry == nil {
		a.Retry = &RetryPolicy{On: append([]string(nil), DefaultRetryOn...)}
	}
	a.Retry.ApplyDefaults()
}

// ApplyDefaults fills the unset fields of a retry policy: 2 attempts on
// gateway-error, connect-failure and reset, backoff from 25ms up to ten times
// the base, a budget of 20% of active requests with at least 10 concurrent
// retries always allowed. It is idempotent. A disabled policy stays as it is.
func (r *RetryPolicy) ApplyDefaults() {
	if r.Disabled {
		return
	}
	setInt(&r.Attempts, defaultRetryAttempts)
	if len(r.On) == 0 {
		r.On = append([]string(nil), defaultRetryOn...)
	}
	setDur(&r.BackoffBase, defaultBackoffBase)
	setDur(&r.BackoffMax, defaultBackoffMaxFactor*r.BackoffBase.D())
	setFloat(&r.BudgetPercent, defaultBudgetPercent)
	setInt(&r.BudgetMinConcurrency, defaultBudgetMinConcurrency)
}

func (c *Cluster) applyDefaults() {
	for i := range c.Endpoints {
		setInt(&c.Endpoints[i].Weight, defaultEndpointWeight)
	}
	if c.DNS != nil {
		setDur(&c.DNS.Refresh, defaultDNSRefresh)
	}
	setStr(&c.LB, defaultLB)
	setStr(&c.Protocol, defaultClusterProtocol)
	setDur(&c.ConnectTimeout, defaultConnectTimeout)
	setInt(&c.MaxConnsPerEndpoint, defaultMaxConnsPerEndpoint)
	setDur(&c.IdleTimeout, defaultClusterIdleTimeout)
	if h := c.HealthCheck; h != nil {
		if h.GRPC == nil {
			setStr(&h.Path, defaultHealthPath)
		}
		setDur(&h.Interval, defaultHealthInterval)
		setDur(&h.Timeout, defaultHealthTimeout)
		setInt(&h.HealthyThreshold, defaultHealthyThreshold)
		setInt(&h.UnhealthyThreshold, defaultUnhealthyThreshold)
	}
	if c.OutlierDetection == nil {
		// On by default, like Linkerd's failure accrual: an endpoint that
		// refuses connections or keeps failing leaves the balancer.
		c.OutlierDetection = &OutlierDetection{}
	}
	if o := c.OutlierDetection; !o.Disabled {
		setInt(&o.Consecutive5xx, defaultConsecutive5xx)
		setDur(&o.Interval, defaultOutlierInterval)
		setDur(&o.BaseEjectionTime, defaultBaseEjectionTime)
		setDur(&o.MaxEjectionTime, defaultMaxEjectionTime)
		setFloat(&o.MaxEjectionPercent, defaultMaxEjectionPercent)
	}
	cb := &c.CircuitBreakers
	setInt(&cb.MaxConnections, defaultCircuitBreakerLimit)
	setInt(&cb.MaxPending, defaultCircuitBreakerLimit)
	setInt(&cb.MaxRequests, defaultCircuitBreakerLimit)
	setInt(&cb.MaxRetries, defaultCircuitBreakerMaxRetries)
	setFloat(&c.PanicThreshold, defaultPanicThreshold)
	if t := c.TLS; t != nil {
		setStr(&t.Mode, "mtls")
		setStr(&t.MinVersion, defaultTLSMinVersion)
	}
}

// applyServiceDefaults defaults a wasm service: a filter that is a
// singleton by default, as Envoy's singleton: true.
func (f *Filter) applyServiceDefaults() {
	setInt(&f.PoolSize, 1)
	f.applyDefaults()
}

func (f *Filter) applyDefaults() {
	setStr(&f.FailurePolicy, defaultFailurePolicy)
	setInt(&f.MemoryLimitMiB, defaultMemoryLimitMiB)
	setDur(&f.CallbackTimeout, defaultCallbackTimeout)
	setInt(&f.MaxBodyBytes, defaultFilterBodyBytes)
}

func orIntDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// Path is the gRPC path the match names: /SERVICE/METHOD, or the prefix
// /SERVICE/ when no method is given.
func (g *GRPCMatch) Path() string {
	if g.Method != "" {
		return "/" + g.Service + "/" + g.Method
	}
	return "/" + g.Service + "/"
}
