package cluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// healthSettings is health_check with defaults applied.
type healthSettings struct {
	Path               string `json:",omitempty"` // HTTP checks
	Host               string
	Interval           time.Duration
	Timeout            time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
	ExpectedStatuses   []int       // nil: 200-399
	GRPC               *grpcHealth `json:",omitempty"` // nil: HTTP checks
}

func compileHealthCheck(h config.HealthCheck) (*healthSettings, error) {
	s := &healthSettings{
		Path:               h.Path,
		Host:               h.Host,
		Interval:           orDuration(h.Interval, 5*time.Second),
		Timeout:            orDuration(h.Timeout, time.Second),
		HealthyThreshold:   h.HealthyThreshold,
		UnhealthyThreshold: h.UnhealthyThreshold,
	}
	if h.GRPC != nil {
		// config.Validate refused path and expected_statuses with grpc.
		s.GRPC = compileGRPCHealth(*h.GRPC)
		s.Path = ""
	} else if s.Path == "" {
		s.Path = "/healthz"
	}
	if s.GRPC == nil && !strings.HasPrefix(s.Path, "/") {
		return nil, fmt.Errorf("path %q must start with /", s.Path)
	}
	if s.HealthyThreshold < 0 || s.UnhealthyThreshold < 0 {
		return nil, fmt.Errorf("thresholds must not be negative (healthy %d, unhealthy %d)",
			s.HealthyThreshold, s.UnhealthyThreshold)
	}
	if s.HealthyThreshold == 0 {
		s.HealthyThreshold = 2
	}
	if s.UnhealthyThreshold == 0 {
		s.UnhealthyThreshold = 3
	}
	for i, st := range h.ExpectedStatuses {
		if st < 100 || st > 599 {
			return nil, fmt.Errorf("expected_statuses[%d]: %d is not an HTTP status", i, st)
		}
	}
	if len(h.ExpectedStatuses) > 0 {
		s.ExpectedStatuses = slices.Clone(h.ExpectedStatuses)
	}
	return s, nil
}

func (h *healthSettings) expected(status int) bool {
	if h.ExpectedStatuses == nil {
		return status >= 200 && status < 400
	}
	return slices.Contains(h.ExpectedStatuses, status)
}

// startHealthCheckLocked starts e's checker goroutine (c.mu held). An
// endpoint starts healthy (also one added by DNS): it takes
// unhealthy_threshold failed checks to take it out, so a starting sidecar
// sends traffic at once instead of waiting for a first round of checks.
func (c *Cluster) startHealthCheckLocked(e *Endpoint) {
	if e.hcStop != nil || e.retired {
		return
	}
	e.hcStop = make(chan struct{})
	c.wg.Add(1)
	go c.healthCheckLoop(e, e.hcStop)
}

// healthCheckLoop checks e every interval (plus up to 10% jitter, so the
// checks of many sidecars do not line up) until stop closes.
func (c *Cluster) healthCheckLoop(e *Endpoint, stop chan struct{}) {
	defer c.wg.Done()
	h := c.s.HealthCheck
	var check func() error
	if h.GRPC != nil {
		check = func() error { return c.checkGRPC(e) }
	} else {
		var done func()
		check, done = c.httpCheck(e)
		defer done()
	}

	var run checkRun
	timer := time.NewTimer(jitter(h.Interval))
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		err := check()
		if err != nil {
			c.stats.HealthCheckFailures.Add(1)
		}
		if run.record(h, err == nil, e.unhealthy.Load()) {
			c.setHealth(e, err == nil, err)
		}
		timer.Reset(nextCheck(h.Interval))
	}
}

// nextCheck is the wait for the next check: interval plus jitter.
func nextCheck(interval time.Duration) time.Duration { return interval + jitter(interval) }

// jitter is a random delay of up to a tenth of interval.
func jitter(interval time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(interval)/10 + 1))
}

// checkRun counts an endpoint's consecutive passed and failed checks.
type checkRun struct{ successes, failures int }

// record adds one check's outcome and reports whether the endpoint's
// health flips: an unhealthy endpoint after healthy_threshold passes in a
// row, a healthy one after unhealthy_threshold failures in a row.
func (r *checkRun) record(h *healthSettings, passed, unhealthy bool) bool {
	if passed {
		r.successes, r.failures = r.successes+1, 0
		return unhealthy && r.successes >= h.HealthyThreshold
	}
	r.successes, r.failures = 0, r.failures+1
	return !unhealthy && r.failures >= h.UnhealthyThreshold
}

// httpCheck returns e's HTTP check (nil when it passed) and what releases
// its buffers. Each check opens its own connection ("Connection: close"):
// it tests that the endpoint accepts connections, uses none of the request
// pool, and leaves no idle connection behind.
func (c *Cluster) httpCheck(e *Endpoint) (check func() error, done func()) {
	h := c.s.HealthCheck
	client := &fasthttp.HostClient{
		Addr: e.addr,
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout(timeout, h.Timeout), Resolver: c.resolver}
			return d.Dial("tcp", addr)
		},
		MaxConns:                  1,
		NoDefaultUserAgentHeader:  true,
		MaxIdemponentCallAttempts: 1,
	}
	c.applyTLS(client)
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	resp.SkipBody = true
	host := h.Host
	if host == "" {
		host = e.addr
	}
	check = func() error {
		req.Reset()
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI(h.Path)
		req.Header.SetHost(host)
		req.Header.Set("User-Agent", healthCheckUserAgent)
		req.SetConnectionClose()
		if err := client.DoTimeout(req, resp, h.Timeout); err != nil {
			return err
		}
		if !h.expected(resp.StatusCode()) {
			return fmt.Errorf("status %d is not expected", resp.StatusCode())
		}
		return nil
	}
	done = func() {
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	return check, done
}

// healthCheckUserAgent names the checks in the endpoints' logs.
const healthCheckUserAgent = "weft-health-check"

// setHealth records a health transition (err: why the endpoint failed)
// and republishes the view.
func (c *Cluster) setHealth(e *Endpoint, healthy bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.retired || c.closed.Load() {
		return
	}
	e.unhealthy.Store(!healthy)
	if healthy {
		c.log.Info("endpoint healthy", zap.String("endpoint", e.addr))
	} else {
		c.log.Warn("endpoint unhealthy", zap.String("endpoint", e.addr), zap.Error(err))
	}
	c.rebuildLocked()
}
