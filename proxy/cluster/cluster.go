package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// Options are what a Cluster needs from its host process.
type Options struct {
	// Logger receives state transitions (health, ejections, DNS changes).
	// Nil means no logging.
	Logger *zap.Logger
	// Resolver resolves DNS clusters and host names in static endpoints.
	// Nil means net.DefaultResolver.
	Resolver *net.Resolver
	// TLS, when set, makes every connection to the endpoints (requests and
	// health checks) TLS with this config (see tls.go). It must be set
	// exactly when the config's tls is in mtls mode.
	TLS *tls.Config
}

// Defaults applied by New to zero config fields.
const (
	defaultConnectTimeout      = time.Second
	defaultIdleTimeout         = 60 * time.Second
	defaultMaxConnsPerEndpoint = 1024
	defaultPanicThreshold      = 50
	defaultDNSRefresh          = 30 * time.Second
	defaultBreakerLimit        = 1024
	// defaultMaxRetries is loose, as Istio sets Envoy's (whose own default
	// of 3 fails clients as soon as a few endpoints die under load): the
	// route's retry budget is what keeps retries from multiplying load.
	defaultMaxRetries = 1024
	// maxPendingWait bounds how long a request waits for a pooled
	// connection when its own deadline is later (or absent).
	maxPendingWait = 30 * time.Second
	// dnsLookupTimeout bounds one DNS refresh.
	dnsLookupTimeout = 5 * time.Second
	// responseReadBuffer is the per-connection read buffer; response
	// headers must fit in it.
	responseReadBuffer = 16 << 10
	// maxResponseBodyBytes bounds a buffered upstream response.
	maxResponseBodyBytes = 64 << 20
)

// settings is a cluster config with every default applied.
type settings struct {
	ConnectTimeout      time.Duration
	IdleTimeout         time.Duration
	MaxConnsPerEndpoint int
	PanicThreshold      float64 // 0: panic mode disabled
	MaxConnections      int64
	MaxPending          int64
	MaxRequests         int64
	MaxRetries          int64
	HealthCheck         *healthSettings  `json:",omitempty"`
	Outlier             *outlierSettings `json:",omitempty"`
}

// Cluster is one compiled upstream cluster: its endpoints, load balancer,
// health and outlier state, circuit breakers and connection pools. All
// methods are safe for concurrent use; Pick, HashKey, the breakers and
// Endpoint.Do/Report are the data path and do not allocate.
type Cluster struct {
	name     string
	key      string
	lbName   string
	log      *zap.Logger
	resolver *net.Resolver
	s        settings
	lb       balancer
	hashOn   hashOn
	dns      *config.DNS
	statics  []config.Endpoint
	tls      *tls.Config
	protocol string // "" (HTTP/1.1), "http2" or "auto"

	view     atomic.Pointer[view]
	breakers breakers
	stats    Stats
	closed   atomic.Bool

	mu      sync.Mutex // guards set, lifecycle and ejection bookkeeping
	set     *endpointSet
	started bool
	stop    chan struct{}
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// endpointSet is one membership of the cluster (the static list, or one
// DNS answer) with what the balancer compiled from it.
type endpointSet struct {
	endpoints []*Endpoint
	ring      *ring // ring_hash only
}

// view is what Pick reads: a membership plus which endpoints may take
// traffic now. It is rebuilt (never mutated) when membership, health or
// ejection changes.
type view struct {
	set   *endpointSet
	hosts []*Endpoint // usable endpoints; all of them in panic mode
	cum   []uint64    // cum[i] is the weight of hosts[0..i]
	total uint64
	panic bool
	// schedule is the smooth weighted round-robin sequence over hosts
	// (round_robin only; nil when every weight is equal).
	schedule []*Endpoint
}

// balancer is one load-balancing policy. Implementations live in
// round_robin.go, least_request.go, random.go and ringhash.go.
type balancer interface {
	// compile precomputes what depends only on membership.
	compile(set *endpointSet)
	// prepare precomputes what depends on which endpoints are usable.
	prepare(v *view)
	// pick chooses from v, avoiding exclude when another choice exists.
	pick(v *view, key uint64, hasKey bool, exclude *Endpoint) *Endpoint
}

// New compiles a cluster config. It applies the defaults documented in
// config.Cluster, refuses nonsense, and starts nothing: call Start.
func New(c config.Cluster, o Options) (*Cluster, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("cluster: name is empty")
	}
	fail := func(format string, args ...any) (*Cluster, error) {
		return nil, fmt.Errorf("cluster %q: "+format, append([]any{c.Name}, args...)...)
	}
	cl := &Cluster{name: c.Name, log: o.Logger, resolver: o.Resolver, tls: o.TLS, protocol: c.Protocol}
	if cl.protocol == "http1" {
		cl.protocol = "" // the default: the digest stays what it was
	}
	if cl.log == nil {
		cl.log = zap.NewNop()
	}
	cl.log = cl.log.With(zap.String("cluster", c.Name))
	if cl.resolver == nil {
		cl.resolver = net.DefaultResolver
	}

	switch {
	case len(c.Endpoints) > 0 && c.DNS != nil:
		return fail("set either endpoints or dns, not both")
	case len(c.Endpoints) == 0 && c.DNS == nil:
		return fail("no endpoints and no dns: set one of them")
	}
	seen := make(map[string]int, len(c.Endpoints))
	for i, ep := range c.Endpoints {
		if err := checkHostPort(ep.Address); err != nil {
			return fail("endpoint %d: %w", i, err)
		}
		if j, dup := seen[ep.Address]; dup {
			return fail("endpoint %d: address %q repeats endpoint %d", i, ep.Address, j)
		}
		seen[ep.Address] = i
		if ep.Weight < 0 || ep.Weight > maxWeight {
			return fail("endpoint %d (%s): weight %d is out of range 1..%d", i, ep.Address, ep.Weight, maxWeight)
		}
		w := ep.Weight
		if w == 0 {
			w = 1
		}
		cl.statics = append(cl.statics, config.Endpoint{Address: ep.Address, Weight: w})
	}
	if c.DNS != nil {
		d := *c.DNS
		if d.Name == "" {
			return fail("dns: name is empty")
		}
		if d.Port < 1 || d.Port > 65535 {
			return fail("dns %q: port %d is out of range 1..65535", d.Name, d.Port)
		}
		if d.Refresh == 0 {
			d.Refresh = config.Duration(defaultDNSRefresh)
		}
		cl.dns = &d
	}

	cl.lbName = c.LB
	if cl.lbName == "" {
		cl.lbName = "round_robin"
	}
	switch cl.lbName {
	case "round_robin":
		cl.lb = &roundRobin{}
	case "least_request":
		cl.lb = leastRequest{}
	case "random":
		cl.lb = random{}
	case "ring_hash":
		cl.lb = ringHash{}
	default:
		return fail("lb %q is unknown: use round_robin, least_request, random or ring_hash", c.LB)
	}
	if c.HashOn != nil {
		if cl.lbName != "ring_hash" {
			return fail("hash_on is only used by lb ring_hash (lb is %s)", cl.lbName)
		}
		h, err := compileHashOn(*c.HashOn)
		if err != nil {
			return fail("hash_on: %w", err)
		}
		cl.hashOn = h
	}

	s := &cl.s
	s.ConnectTimeout = orDuration(c.ConnectTimeout, defaultConnectTimeout)
	s.IdleTimeout = orDuration(c.IdleTimeout, defaultIdleTimeout)
	s.MaxConnsPerEndpoint = c.MaxConnsPerEndpoint
	if s.MaxConnsPerEndpoint < 0 {
		return fail("max_conns_per_endpoint %d is negative", c.MaxConnsPerEndpoint)
	}
	if s.MaxConnsPerEndpoint == 0 {
		s.MaxConnsPerEndpoint = defaultMaxConnsPerEndpoint
	}
	switch {
	case c.PanicThreshold > 100:
		return fail("panic_threshold %g is over 100 (percent)", c.PanicThreshold)
	case c.PanicThreshold < 0:
		s.PanicThreshold = 0
	case c.PanicThreshold == 0:
		s.PanicThreshold = defaultPanicThreshold
	default:
		s.PanicThreshold = c.PanicThreshold
	}
	cb := c.CircuitBreakers
	for _, l := range []struct {
		name string
		v    int
		dst  *int64
		def  int64
	}{
		{"max_connections", cb.MaxConnections, &s.MaxConnections, defaultBreakerLimit},
		{"max_pending", cb.MaxPending, &s.MaxPending, defaultBreakerLimit},
		{"max_requests", cb.MaxRequests, &s.MaxRequests, defaultBreakerLimit},
		{"max_retries", cb.MaxRetries, &s.MaxRetries, defaultMaxRetries},
	} {
		if l.v < 0 {
			return fail("circuit_breakers.%s %d is negative", l.name, l.v)
		}
		*l.dst = int64(l.v)
		if l.v == 0 {
			*l.dst = l.def
		}
	}
	if c.HealthCheck != nil {
		h, err := compileHealthCheck(*c.HealthCheck)
		if err != nil {
			return fail("health_check: %w", err)
		}
		s.HealthCheck = h
	}
	if c.OutlierDetection != nil && !c.OutlierDetection.Disabled {
		od, err := compileOutlier(*c.OutlierDetection)
		if err != nil {
			return fail("outlier_detection: %w", err)
		}
		s.Outlier = od
	}

	// The key digests the normalized config, so an omitted field and its
	// explicit default give the same key.
	digest, err := json.Marshal(struct {
		Name      string
		LB        string
		HashOn    hashOn
		Endpoints []config.Endpoint
		DNS       *config.DNS
		Settings  settings
		TLS       *config.ClusterTLS `json:",omitempty"`
		Protocol  string             `json:",omitempty"`
	}{cl.name, cl.lbName, cl.hashOn, cl.statics, cl.dns, cl.s, tlsKey(c.TLS), cl.protocol})
	if err != nil {
		return fail("digest: %w", err)
	}
	sum := sha256.Sum256(digest)
	cl.key = hex.EncodeToString(sum[:16])

	set := &endpointSet{}
	for _, ep := range cl.statics {
		set.endpoints = append(set.endpoints, newEndpoint(cl, ep.Address, uint32(ep.Weight)))
	}
	cl.mu.Lock()
	cl.installLocked(set)
	cl.mu.Unlock()
	return cl, nil
}

// maxWeight bounds an endpoint weight so weight sums never overflow.
const maxWeight = 1 << 20

func orDuration(d config.Duration, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d.D()
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port %q is not a number in 1..65535", addr, port)
	}
	return nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Key returns a digest of the cluster's normalized config. Two configs with
// the same Key compile to the same cluster, so a snapshot swap may keep the
// running one (with its health, ejections and pools) instead.
func (c *Cluster) Key() string { return c.key }

// Stats returns the cluster's counters. The pointer stays valid for the
// cluster's life.
func (c *Cluster) Stats() *Stats { return &c.stats }

// Start launches the cluster's background work: active health checks,
// DNS refresh and outlier sweeps. For a DNS cluster it resolves once before
// returning (bounded by 5s), so the cluster has endpoints when the proxy
// starts sending to it; a failed first resolution is logged and retried
// at the refresh interval. Start after Close, or a second Start, does
// nothing.
func (c *Cluster) Start() {
	c.mu.Lock()
	if c.started || c.closed.Load() {
		c.mu.Unlock()
		return
	}
	c.started = true
	c.stop = make(chan struct{})
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.Unlock()

	if c.dns != nil {
		c.refreshDNS()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return // Close ran during the first resolution
	}
	if c.dns != nil {
		c.wg.Add(1)
		go c.dnsLoop()
	}
	if c.s.HealthCheck != nil {
		for _, e := range c.set.endpoints {
			c.startHealthCheckLocked(e)
		}
	}
	if c.s.Outlier != nil {
		c.wg.Add(1)
		go c.outlierLoop()
	}
}

// Close stops every goroutine the cluster started and closes idle upstream
// connections. Requests in flight finish; connections they return to the
// pool are closed by fasthttp's idle cleaner within idle_timeout, and Do
// after Close sends "Connection: close" so no new keep-alive connection
// outlives the cluster.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed.Swap(true) {
		c.mu.Unlock()
		return
	}
	if c.stop != nil {
		close(c.stop)
		c.cancel()
	}
	for _, e := range c.set.endpoints {
		e.retireLocked()
	}
	c.mu.Unlock()
	c.wg.Wait()
	for _, e := range c.set.endpoints {
		e.client.CloseIdleConnections()
		e.closeStreamTransports()
	}
}

// installLocked makes set the cluster's membership and publishes a view.
func (c *Cluster) installLocked(set *endpointSet) {
	c.lb.compile(set)
	c.set = set
	c.rebuildLocked()
}

// rebuild publishes a new view after a health or ejection change.
func (c *Cluster) rebuild() {
	c.mu.Lock()
	c.rebuildLocked()
	c.mu.Unlock()
}

func (c *Cluster) rebuildLocked() {
	set := c.set
	v := &view{set: set}
	usable := make([]*Endpoint, 0, len(set.endpoints))
	for _, e := range set.endpoints {
		if e.usable() {
			usable = append(usable, e)
		}
	}
	n := len(set.endpoints)
	v.panic = c.s.PanicThreshold > 0 && n > 0 &&
		float64(len(usable))*100 < c.s.PanicThreshold*float64(n)
	v.hosts = usable
	if v.panic {
		v.hosts = set.endpoints
	}
	if old := c.view.Load(); old != nil && old.panic != v.panic {
		if v.panic {
			c.log.Warn("panic mode: too few usable endpoints, balancing across all",
				zap.Int("usable", len(usable)), zap.Int("endpoints", n))
		} else {
			c.log.Info("panic mode over", zap.Int("usable", len(usable)), zap.Int("endpoints", n))
		}
	}
	v.cum = make([]uint64, len(v.hosts))
	for i, e := range v.hosts {
		v.total += uint64(e.weight)
		v.cum[i] = v.total
	}
	c.lb.prepare(v)
	c.view.Store(v)
}

// Pick chooses a usable endpoint: healthy and not ejected, or any endpoint
// in panic mode (when fewer than panic_threshold percent are usable). It
// avoids exclude (the endpoint a retry failed on) when another choice
// exists. key and hasKey come from HashKey and matter for ring_hash only.
// Pick returns nil when there is no endpoint to send to.
func (c *Cluster) Pick(key uint64, hasKey bool, exclude *Endpoint) *Endpoint {
	v := c.view.Load()
	if len(v.hosts) == 0 {
		return nil
	}
	if len(v.hosts) == 1 {
		return v.hosts[0]
	}
	return c.lb.pick(v, key, hasKey, exclude)
}

// reselects bounds how often PickUntried draws again from the balancer
// when a draw lands on a tried endpoint (Envoy's
// host_selection_retry_max_attempts), before it looks for one itself.
const reselects = 3

// PickUntried chooses an endpoint for a retry: like Pick, but avoiding
// every endpoint in tried (Envoy's previous_hosts retry predicate), so a
// request that met one dead endpoint does not meet it again while another
// is usable. When every usable endpoint was tried it returns the
// balancer's choice among them, avoiding the last one tried. It does not
// allocate.
func (c *Cluster) PickUntried(key uint64, hasKey bool, tried []*Endpoint) *Endpoint {
	v := c.view.Load()
	if len(v.hosts) == 0 {
		return nil
	}
	var last *Endpoint
	if len(tried) > 0 {
		last = tried[len(tried)-1]
	}
	if len(v.hosts) == 1 {
		return v.hosts[0]
	}
	first := c.lb.pick(v, key, hasKey, last)
	ep := first
	for i := 0; i < reselects && isIn(ep, tried); i++ {
		ep = c.lb.pick(v, key, hasKey, ep)
	}
	if !isIn(ep, tried) {
		return ep
	}
	// The balancer keeps landing on tried endpoints (they hold most of
	// the weight, or the hash points at them): take the first untried
	// one after the balancer's choice, in host order.
	start := 0
	for i, h := range v.hosts {
		if h == first {
			start = i
			break
		}
	}
	for i := 1; i <= len(v.hosts); i++ {
		if h := v.hosts[(start+i)%len(v.hosts)]; !isIn(h, tried) {
			return h
		}
	}
	return first
}

func isIn(e *Endpoint, set []*Endpoint) bool {
	for _, x := range set {
		if x == e {
			return true
		}
	}
	return false
}
