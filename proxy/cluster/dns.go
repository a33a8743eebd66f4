package cluster

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// dnsLoop re-resolves the cluster's name every dns.refresh until Close.
func (c *Cluster) dnsLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.dns.Refresh.D())
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.refreshDNS()
		}
	}
}

// refreshDNS resolves the name (A and AAAA) and installs the answer.
// Endpoints whose address stays keep their state (health, ejection,
// pool); removed ones stop their checks and close their idle connections.
// A failed or empty answer keeps the last good set.
func (c *Cluster) refreshDNS() {
	// c.ctx ends at Close, so Close never waits for a slow resolver. The
	// lookup gets its own bound, not the refresh interval: a short interval
	// must not turn a slow (busy) resolver into a failed refresh.
	ctx, cancel := context.WithTimeout(c.ctx, dnsLookupTimeout)
	ips, err := c.resolver.LookupIPAddr(ctx, c.dns.Name)
	cancel()
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no A or AAAA records", Name: c.dns.Name, IsNotFound: true}
	}
	if err != nil {
		c.stats.DNSFailures.Add(1)
		c.mu.Lock()
		n := len(c.set.endpoints)
		c.mu.Unlock()
		c.log.Warn("dns refresh failed, keeping the last good endpoints",
			zap.String("name", c.dns.Name), zap.Int("endpoints", n), zap.Error(err))
		return
	}
	port := strconv.Itoa(c.dns.Port)
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip.String(), port))
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	c.setAddresses(addrs)
}

// setAddresses installs a new membership (weight 1 each), reusing the
// Endpoint of every address that stays.
func (c *Cluster) setAddresses(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return
	}
	old := c.set.endpoints
	if slices.EqualFunc(old, addrs, func(e *Endpoint, a string) bool { return e.addr == a }) {
		return
	}
	byAddr := make(map[string]*Endpoint, len(old))
	for _, e := range old {
		byAddr[e.addr] = e
	}
	set := &endpointSet{endpoints: make([]*Endpoint, 0, len(addrs))}
	var added []string
	for _, a := range addrs {
		e, ok := byAddr[a]
		if ok {
			delete(byAddr, a)
		} else {
			e = newEndpoint(c, a, 1)
			added = append(added, a)
		}
		set.endpoints = append(set.endpoints, e)
	}
	removed := make([]string, 0, len(byAddr))
	for _, e := range byAddr {
		removed = append(removed, e.addr)
		e.retireLocked()
		// In-flight requests finish; the pool closes what they return
		// after idle_timeout.
		e.client.CloseIdleConnections()
	}
	c.installLocked(set)
	if c.started && c.s.HealthCheck != nil {
		for _, e := range set.endpoints {
			c.startHealthCheckLocked(e)
		}
	}
	c.log.Info("dns endpoints changed", zap.String("name", c.dns.Name),
		zap.Strings("added", added), zap.Strings("removed", removed), zap.Int("endpoints", len(addrs)))
}

// retireLocked stops e's health checks and ejection timer (c.mu held).
func (e *Endpoint) retireLocked() {
	e.retired = true
	if e.hcStop != nil {
		close(e.hcStop)
		e.hcStop = nil
	}
	if e.ejectTimer != nil {
		e.ejectTimer.Stop()
		e.ejectTimer = nil
	}
}
