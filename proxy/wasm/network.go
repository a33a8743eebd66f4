package wasm

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/filter"
)

// Network (L4) filters: a plugin on a tcp listener gets a context per
// connection (proxy_on_context_create with its root as parent, then
// proxy_on_new_connection), sees the bytes each way in
// proxy_on_downstream_data / proxy_on_upstream_data (buffers
// DownstreamData / UpstreamData, readable and writable during the call),
// hears proxy_on_downstream/upstream_connection_close, and at the end
// proxy_on_log (the Go SDK's OnStreamDone), proxy_on_done and
// proxy_on_delete. A Pause holds the bytes back until the next read on that
// side (they come again, with the new bytes, up to max_body_bytes);
// proxy_close_stream(Downstream or Upstream) closes the connection.

// Stream types of a network context, and peer types of the close
// callbacks.
const (
	streamTypeDownstream = 2
	streamTypeUpstream   = 3
	peerRemote           = 2
)

// netState is what a network context holds beside its stream context.
// Guarded by the VM's mu.
type netState struct {
	data      [2][]byte // the bytes of the data callback running now: [0] downstream, [1] upstream
	closeConn bool      // proxy_close_stream asked to close the connection
}

// ConnFilter is a plugin's context on one connection of a tcp listener.
// The tcp proxy's glue calls it (package tcpproxy's ConnFilter); it is not
// safe for concurrent calls, which the tcp proxy never makes.
type ConnFilter struct {
	p    *Plugin
	f    *streamFilter
	skip bool // failed open: bytes pass untouched
	dead bool // failed closed: the connection closes
	in   bool // admitted by p.active: leave it in OnDone
}

// NewConnFilter creates the plugin's context for a new connection, on
// one VM of the pool. s carries the connection's properties.
func (p *Plugin) NewConnFilter(s *filter.Stream) *ConnFilter {
	c := &ConnFilter{p: p}
	if !p.active.enter() { // closing: as a filter that failed
		c.failed(errVMBroken)
		return c
	}
	c.in = true
	sl, v := p.pick()
	if v == nil {
		c.failed(errNoVM)
		return c
	}
	f := &streamFilter{p: p, s: s, slot: sl, v: v, net: &netState{}, wake: make(chan uint8, 1)}
	sl.load.Add(1)
	c.f = f
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.broken {
		c.failed(errVMBroken)
		return c
	}
	f.id = v.nextID
	v.nextID++
	v.contexts.put(f)
	v.enterStream(f)
	_, err := v.invoke(v.onContextCreate, uint64(f.id), uint64(p.rootCtx))
	v.cur = nil
	if err != nil {
		v.breakLocked(fmt.Errorf("proxy_on_context_create: %w", err))
		c.failed(err)
	}
	return c
}

// failed applies the failure policy: fail_open lets the bytes through
// untouched from now on, fail_closed closes the connection.
func (c *ConnFilter) failed(err error) {
	p := c.p
	if p.spec.FailOpen {
		if !c.skip {
			p.events.n[eventFailOpen].Add(1)
			p.log.Warn("wasm network filter failed; fail_open: passing the connection through", zap.Error(err))
		}
		c.skip = true
		return
	}
	if !c.dead {
		p.events.n[eventFailClosed].Add(1)
		p.log.Warn("wasm network filter failed; fail_closed: closing the connection", zap.Error(err))
	}
	c.dead = true
}

// call runs g for the context with data as buffer dir's bytes; it returns
// the action, the buffer as the guest left it, and false when the call
// failed (the policy is applied) or the guest asked to close.
func (c *ConnFilter) call(g *guestFunc, dir int, data []byte, args ...uint64) (uint64, []byte, bool) {
	if c.skip || c.dead || c.f == nil {
		return actionContinue, data, !c.dead
	}
	f, v := c.f, c.f.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.broken || v.contexts.get(f.id) != f {
		c.failed(errVMBroken)
		return actionContinue, data, !c.dead
	}
	if g == nil {
		return actionContinue, data, true
	}
	if dir >= 0 {
		f.net.data[dir] = data
	}
	v.enterStream(f)
	action, err := v.invoke(g, args...)
	v.cur = nil
	if dir >= 0 {
		data = f.net.data[dir]
		f.net.data[dir] = nil
	}
	if err != nil {
		v.breakLocked(err)
		c.failed(err)
		return actionContinue, data, !c.dead
	}
	if f.net.closeConn { // the close callbacks still run, as in Envoy
		return action, data, false
	}
	return action, data, true
}

// OnNewConnection runs proxy_on_new_connection; false closes the
// connection. A Pause is taken as Continue: the upstream is dialed at once.
func (c *ConnFilter) OnNewConnection() bool {
	var g *guestFunc
	if c.f != nil {
		g = c.f.v.onNewConnection
	}
	_, _, ok := c.call(g, -1, nil, c.id())
	return ok
}

// OnData runs proxy_on_downstream_data or proxy_on_upstream_data.
func (c *ConnFilter) OnData(fromUpstream bool, data []byte, endOfStream bool) (out []byte, hold, closeConn bool) {
	dir := 0
	var g *guestFunc
	if c.f != nil {
		g = c.f.v.onDownstreamData
		if fromUpstream {
			dir, g = 1, c.f.v.onUpstreamData
		}
	}
	action, out, ok := c.call(g, dir, data, c.id(), uint64(len(data)), b2u(endOfStream))
	if !ok {
		return nil, false, true
	}
	if action == actionContinue || c.skip {
		return out, false, false
	}
	if len(out) > c.p.spec.MaxBodyBytes { // held back too much
		c.p.events.n[eventBodyTooLarge].Add(1)
		c.failed(fmt.Errorf("a paused connection held %d bytes, over max_body_bytes", len(out)))
		if c.dead {
			return nil, false, true
		}
		return out, false, false
	}
	return out, true, false
}

// OnClose runs proxy_on_downstream_connection_close or
// proxy_on_upstream_connection_close (peer type Remote).
func (c *ConnFilter) OnClose(upstream bool) {
	if c.f == nil {
		return
	}
	g := c.f.v.onDownstreamClose
	if upstream {
		g = c.f.v.onUpstreamClose
	}
	c.call(g, -1, nil, c.id(), peerRemote)
}

// OnDone runs proxy_on_log, proxy_on_done and proxy_on_delete and
// releases the context.
func (c *ConnFilter) OnDone() {
	if f := c.f; f != nil {
		v := f.v
		v.mu.Lock()
		if !v.broken && v.contexts.get(f.id) == f {
			v.enterStream(f)
			for _, g := range []*guestFunc{v.onLog, v.onDone, v.onDelete} {
				if g == nil || v.broken {
					continue
				}
				if _, err := v.invoke(g, uint64(f.id)); err != nil {
					v.breakLocked(fmt.Errorf("network context end: %w", err))
				}
			}
			v.cur = nil
		}
		v.contexts.remove(f)
		v.mu.Unlock()
		f.slot.load.Add(-1)
		c.f = nil
	}
	if c.in {
		c.in = false
		c.p.active.leave()
	}
}

func (c *ConnFilter) id() uint64 {
	if c.f == nil {
		return 0
	}
	return uint64(c.f.id)
}
