package sdk

import (
	"math"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// Buffers and stream types of network (L4) contexts.
const (
	bufDownstreamData = 2
	bufUpstreamData   = 3

	streamDownstream = 2
)

// NetworkPlugin is a Plugin that filters the connections of tcp listeners.
// The SDK asks it first for every new context of its root: a non-nil
// NetworkFilter makes the context a connection (the network callbacks
// run; NewHTTPFilter is not asked), nil makes it an HTTP stream. A plugin
// on a tcp listener answers with a filter; one on HTTP listeners returns
// nil, or does not implement NetworkPlugin.
type NetworkPlugin interface {
	NewNetworkFilter(c *Connection) NetworkFilter
}

// NetworkFilter is one connection's filter: any value implementing some of
// NewConnectionFilter, DownstreamDataFilter, UpstreamDataFilter,
// DownstreamCloseFilter, UpstreamCloseFilter and ConnectionDoneFilter.
//
// Unlike an HTTP filter's, a panic in a network callback (or in
// NewNetworkFilter) is not recovered: the VM traps and the host applies the
// plugin's failure policy to the connection (fail_closed closes it,
// fail_open passes its bytes through untouched from then on), which the
// SDK could not do from inside the guest.
type NetworkFilter interface{}

// NewConnectionFilter sees the new connection, before the upstream is
// dialed.
type NewConnectionFilter interface {
	OnNewConnection(c *Connection) Action
}

// DownstreamDataFilter sees the bytes the client sent
// (Connection.DownstreamData, replaceable with SetDownstreamData). Pause
// holds them back: they come again, with the next bytes, in the next call.
type DownstreamDataFilter interface {
	OnDownstreamData(c *Connection, size int, endOfStream bool) Action
}

// UpstreamDataFilter sees the bytes the upstream sent
// (Connection.UpstreamData, replaceable with SetUpstreamData).
type UpstreamDataFilter interface {
	OnUpstreamData(c *Connection, size int, endOfStream bool) Action
}

// DownstreamCloseFilter hears that the client's side closed.
type DownstreamCloseFilter interface {
	OnDownstreamClose(c *Connection)
}

// UpstreamCloseFilter hears that the upstream's side closed.
type UpstreamCloseFilter interface {
	OnUpstreamClose(c *Connection)
}

// ConnectionDoneFilter runs once when the connection has ended (from
// proxy_on_log, as the public Go SDK's OnStreamDone).
type ConnectionDoneFilter interface {
	OnConnectionDone(c *Connection)
}

// Connection is one connection of a tcp listener as a network filter sees
// it. Its data methods work during its data callbacks only.
type Connection struct {
	id     uint32
	root   uint32
	filter NetworkFilter
	gone   bool
}

// ID is the connection's context id.
func (c *Connection) ID() uint32 { return c.id }

// RootID is the root context id of the plugin that filters the connection.
func (c *Connection) RootID() uint32 { return c.root }

// Filter returns the value the Plugin made for this connection.
func (c *Connection) Filter() NetworkFilter { return c.filter }

func (c *Connection) use() error {
	if c.gone {
		return ErrStreamGone
	}
	activate(c.id)
	return nil
}

// DownstreamData returns the client's bytes of the running
// OnDownstreamData (held-back bytes included).
func (c *Connection) DownstreamData() ([]byte, error) { return c.data(bufDownstreamData) }

// UpstreamData returns the upstream's bytes of the running OnUpstreamData.
func (c *Connection) UpstreamData() ([]byte, error) { return c.data(bufUpstreamData) }

// SetDownstreamData replaces the client's bytes that go on to the upstream.
func (c *Connection) SetDownstreamData(b []byte) error { return c.setData(bufDownstreamData, b) }

// SetUpstreamData replaces the upstream's bytes that go on to the client.
func (c *Connection) SetUpstreamData(b []byte) error { return c.setData(bufUpstreamData, b) }

func (c *Connection) data(bt uint32) ([]byte, error) {
	if err := c.use(); err != nil {
		return nil, err
	}
	b, st := abi.GetBufferBytes(bt, 0, math.MaxUint32)
	if st == uint32(StatusNotFound) {
		return nil, nil
	}
	return b, statusErr(st)
}

func (c *Connection) setData(bt uint32, b []byte) error {
	if err := c.use(); err != nil {
		return err
	}
	return statusErr(abi.SetBufferBytes(bt, 0, math.MaxUint32, b))
}

// Close closes the connection, both sides (the close callbacks still run).
func (c *Connection) Close() error {
	if err := c.use(); err != nil {
		return err
	}
	return statusErr(abi.CloseStream(streamDownstream))
}

// Property reads a host property of this connection (e.g. "upstream",
// "address" during OnUpstreamData).
func (c *Connection) Property(path ...string) ([]byte, error) {
	if err := c.use(); err != nil {
		return nil, err
	}
	return Property(path...)
}

// newConnection makes context id of root r a connection when r's plugin
// has a network filter for it; false leaves it to be an HTTP stream.
func newConnection(r *rootContext, id uint32) bool {
	np, ok := r.plugin.(NetworkPlugin)
	if !ok {
		return false
	}
	c := &Connection{id: id, root: r.id}
	c.filter = np.NewNetworkFilter(c)
	if c.filter == nil {
		return false
	}
	vm.conns[id] = c
	return true
}

// connFor enters a connection callback: it returns the connection if it
// has a filter.
func connFor(id uint32) *Connection {
	enter(id)
	return vm.conns[id]
}

func onNewConnection(id uint32) uint32 {
	c := connFor(id)
	if c == nil {
		return uint32(Continue)
	}
	if f, ok := c.filter.(NewConnectionFilter); ok {
		return uint32(f.OnNewConnection(c))
	}
	return uint32(Continue)
}

func onDownstreamData(id, size uint32, eos bool) uint32 {
	c := connFor(id)
	if c == nil {
		return uint32(Continue)
	}
	if f, ok := c.filter.(DownstreamDataFilter); ok {
		return uint32(f.OnDownstreamData(c, int(size), eos))
	}
	return uint32(Continue)
}

func onUpstreamData(id, size uint32, eos bool) uint32 {
	c := connFor(id)
	if c == nil {
		return uint32(Continue)
	}
	if f, ok := c.filter.(UpstreamDataFilter); ok {
		return uint32(f.OnUpstreamData(c, int(size), eos))
	}
	return uint32(Continue)
}

func onDownstreamClose(id, _ uint32) {
	c := connFor(id)
	if c == nil {
		return
	}
	if f, ok := c.filter.(DownstreamCloseFilter); ok {
		f.OnDownstreamClose(c)
	}
}

func onUpstreamClose(id, _ uint32) {
	c := connFor(id)
	if c == nil {
		return
	}
	if f, ok := c.filter.(UpstreamCloseFilter); ok {
		f.OnUpstreamClose(c)
	}
}

// connLog runs OnConnectionDone for connection c (proxy_on_log).
func connLog(c *Connection) {
	if f, ok := c.filter.(ConnectionDoneFilter); ok {
		f.OnConnectionDone(c)
	}
}
