//go:build !wasip1

package sdktest

import "github.com/weftmesh/weft/sdk/internal/abi"

// Conn is one emulated connection of a tcp listener, for network (L4)
// filters.
type Conn struct {
	h  *Host
	id uint32
	// Closed is set when the filter closed the connection
	// (proxy_close_stream).
	Closed bool

	data    [2][]byte // the bytes of the data callback running now
	deleted bool
}

// NewConnection creates a connection context (the plugin's
// NewNetworkFilter runs now) and runs OnNewConnection, returning its
// action.
func (h *Host) NewConnection() (*Conn, uint32) {
	c := &Conn{h: h, id: h.nextID}
	h.nextID++
	if h.conns == nil {
		h.conns = make(map[uint32]*Conn)
	}
	h.conns[c.id] = c
	h.effective = c.id
	abi.Exports.OnContextCreate(c.id, rootID)
	h.effective = c.id
	return c, abi.Exports.OnNewConnection(c.id)
}

// ID is the connection's context id.
func (c *Conn) ID() uint32 { return c.id }

// Downstream runs OnDownstreamData with data (the client's bytes) and
// returns the action and the bytes as the filter left them.
func (c *Conn) Downstream(data []byte, endOfStream bool) (uint32, []byte) {
	return c.onData(0, abi.Exports.OnDownstreamData, data, endOfStream)
}

// Upstream runs OnUpstreamData with data (the upstream's bytes).
func (c *Conn) Upstream(data []byte, endOfStream bool) (uint32, []byte) {
	return c.onData(1, abi.Exports.OnUpstreamData, data, endOfStream)
}

func (c *Conn) onData(dir int, g func(uint32, uint32, bool) uint32, data []byte, eos bool) (uint32, []byte) {
	c.data[dir] = clone(data)
	c.h.effective = c.id
	a := g(c.id, uint32(len(data)), eos)
	out := c.data[dir]
	c.data[dir] = nil
	return a, out
}

// CloseDownstream runs OnDownstreamClose (peer type Remote).
func (c *Conn) CloseDownstream() {
	c.h.effective = c.id
	abi.Exports.OnDownstreamClose(c.id, 2)
}

// CloseUpstream runs OnUpstreamClose (peer type Remote).
func (c *Conn) CloseUpstream() {
	c.h.effective = c.id
	abi.Exports.OnUpstreamClose(c.id, 2)
}

// Finish runs OnLog and OnDone and deletes the connection's context.
func (c *Conn) Finish() {
	if c.deleted {
		return
	}
	c.h.effective = c.id
	abi.Exports.OnLog(c.id)
	c.h.effective = c.id
	abi.Exports.OnDone(c.id)
	abi.Exports.OnDelete(c.id)
	delete(c.h.conns, c.id)
	c.deleted = true
}
