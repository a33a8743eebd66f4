package cluster

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// outlierSettings is outlier_detection with defaults applied.
type outlierSettings struct {
	Consecutive5xx           int32 // 0: off
	ConsecutiveGatewayErrors int32 // 0: off
	Interval                 time.Duration
	BaseEjectionTime         time.Duration
	MaxEjectionTime          time.Duration
	MaxEjectionPercent       float64
}

func compileOutlier(o config.OutlierDetection) (*outlierSettings, error) {
	if o.Consecutive5xx < 0 || o.ConsecutiveGatewayErrors < 0 {
		return nil, fmt.Errorf("consecutive_5xx (%d) and consecutive_gateway_errors (%d) must not be negative",
			o.Consecutive5xx, o.ConsecutiveGatewayErrors)
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		return nil, fmt.Errorf("max_ejection_percent %g is out of range 0..100", o.MaxEjectionPercent)
	}
	s := &outlierSettings{
		Consecutive5xx:           int32(o.Consecutive5xx),
		ConsecutiveGatewayErrors: int32(o.ConsecutiveGatewayErrors),
		Interval:                 orDuration(o.Interval, 10*time.Second),
		BaseEjectionTime:         orDuration(o.BaseEjectionTime, 30*time.Second),
		MaxEjectionTime:          orDuration(o.MaxEjectionTime, 300*time.Second),
		MaxEjectionPercent:       o.MaxEjectionPercent,
	}
	if s.Consecutive5xx == 0 {
		s.Consecutive5xx = 5
	}
	if s.MaxEjectionPercent == 0 {
		s.MaxEjectionPercent = 10
	}
	if s.MaxEjectionTime < s.BaseEjectionTime {
		return nil, fmt.Errorf("max_ejection_time %s is shorter than base_ejection_time %s",
			s.MaxEjectionTime, s.BaseEjectionTime)
	}
	return s, nil
}

// Report feeds passive outlier detection with the outcome of one attempt
// on this endpoint: the upstream's status code, or err when there was no
// response. Connect failures, timeouts and resets count as gateway errors
// (and as 5xx); overflow (a breaker refused the attempt) counts as
// nothing. Report does not allocate unless it ejects.
func (e *Endpoint) Report(status int, err error) {
	gateway, failed := false, false
	if err != nil {
		switch Classify(err) {
		case ConnectFailure, Timeout, Reset:
			gateway, failed = true, true
		default:
			return
		}
	} else if status >= 500 {
		failed = true
		gateway = status == 502 || status == 503 || status == 504
	}
	od := e.c.s.Outlier
	if !failed {
		if e.refusalLogged.Load() {
			e.refusalLogged.Store(false)
		}
		if e.consec5xx.Load() != 0 {
			e.consec5xx.Store(0)
		}
		if e.consecGateway.Load() != 0 {
			e.consecGateway.Store(0)
		}
		return
	}
	e.failures.Add(1)
	if od == nil || e.ejected.Load() {
		return
	}
	e.sinceSweep.Add(1)
	trip := e.consec5xx.Add(1) >= od.Consecutive5xx
	if gateway {
		n := e.consecGateway.Add(1)
		if od.ConsecutiveGatewayErrors > 0 && n >= od.ConsecutiveGatewayErrors {
			trip = true
		}
	} else if e.consecGateway.Load() != 0 {
		e.consecGateway.Store(0) // a plain 500 breaks a run of gateway errors
	}
	if trip {
		e.c.eject(e)
	}
}

// eject takes e out of rotation for base_ejection_time × the number of
// times it was ejected (capped at max_ejection_time), unless that would
// eject more than max_ejection_percent of the cluster (at least one
// endpoint may always be ejected) or leave no usable endpoint: a cluster
// never ejects all it has, since an endpoint that might answer beats
// "no healthy upstream" for every request.
func (c *Cluster) eject(e *Endpoint) {
	od := c.s.Outlier
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.retired || e.ejected.Load() || c.closed.Load() {
		return
	}
	e.consec5xx.Store(0)
	e.consecGateway.Store(0)
	n := len(c.set.endpoints)
	ejected, others := 0, 0
	for _, o := range c.set.endpoints {
		if o.ejected.Load() {
			ejected++
		}
		if o != e && o.usable() {
			others++
		}
	}
	why := ""
	switch {
	case others == 0:
		why = "it is the last usable endpoint"
	case ejected > 0 && float64(ejected+1)*100 > od.MaxEjectionPercent*float64(n):
		why = "max_ejection_percent reached"
	}
	if why != "" {
		c.stats.EjectionsOverflow.Add(1)
		// Once per run of refusals, not per failure: a lone dead endpoint
		// would otherwise log every few requests.
		if !e.refusalLogged.Swap(true) {
			c.log.Warn("outlier not ejected: "+why,
				zap.String("endpoint", e.addr), zap.Int("ejected", ejected), zap.Int("endpoints", n),
				zap.Float64("max_ejection_percent", od.MaxEjectionPercent))
		}
		return
	}
	e.refusalLogged.Store(false)
	e.timesEjected++
	d := min(od.BaseEjectionTime*time.Duration(e.timesEjected), od.MaxEjectionTime)
	e.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	e.ejected.Store(true)
	c.stats.Ejections.Add(1)
	c.log.Warn("endpoint ejected", zap.String("endpoint", e.addr),
		zap.Duration("for", d), zap.Int("times", e.timesEjected))
	e.ejectTimer = time.AfterFunc(d, func() { c.unEject(e) })
	c.rebuildLocked()
}

// unEject returns e to rotation when its ejection time is over.
func (c *Cluster) unEject(e *Endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.retired || c.closed.Load() || !e.ejected.Load() {
		return
	}
	e.ejectTimer = nil
	e.ejectedUntil.Store(0)
	e.consec5xx.Store(0)
	e.consecGateway.Store(0)
	e.sinceSweep.Store(0)
	e.ejected.Store(false)
	c.log.Info("endpoint returned from ejection", zap.String("endpoint", e.addr))
	c.rebuildLocked()
}

// outlierLoop runs every outlier_detection.interval: an endpoint that
// stayed in rotation with no failure for a whole interval has its ejection
// multiplier lowered by one, so a host that recovered is not punished for
// its past at its next ejection.
func (c *Cluster) outlierLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.s.Outlier.Interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.sweepOutliers()
		}
	}
}

// sweepOutliers ends an outlier interval: each endpoint in rotation that
// had no failure since the last sweep has its ejection multiplier lowered
// by one.
func (c *Cluster) sweepOutliers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.set.endpoints {
		clean := e.sinceSweep.Swap(0) == 0
		if clean && !e.ejected.Load() && e.timesEjected > 0 {
			e.timesEjected--
		}
	}
}
