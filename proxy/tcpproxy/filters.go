package tcpproxy

import (
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/filter"
)

// ConnFilter is a network (L4) filter's hold on one connection: a Wasm
// network filter (proxy/wasm) behind the proxy's glue. The tunnel calls it
// from both directions' goroutines; an implementation serialises its calls.
type ConnFilter interface {
	// OnNewConnection runs before the upstream is dialed; false closes the
	// connection.
	OnNewConnection() bool
	// OnData sees the bytes read from one side (fromUpstream false: from the
	// downstream) after what the filter held back before them, and
	// endOfStream once that side sent its FIN. It returns the bytes to pass
	// on (maybe rewritten); hold keeps them back (to come again, with more,
	// at the next read); closeConn ends the connection.
	OnData(fromUpstream bool, data []byte, endOfStream bool) (out []byte, hold, closeConn bool)
	// OnClose reports that the connection's side closed.
	OnClose(upstream bool)
	// OnDone releases the filter's context; nothing is called after it.
	OnDone()
}

// ConnFilterFactory makes a listener's filter for each connection. s
// carries what the filter may read about the connection (addresses,
// listener, TLS peer, upstream address once known).
type ConnFilterFactory interface {
	NewConnFilter(s *filter.Stream) ConnFilter
}

// chain runs a connection's filters in order for downstream data and in
// reverse for upstream data (Envoy's read and write filters), each
// direction from the filter that held bytes back last time.
type chain struct {
	fs []ConnFilter
	// s is the connection's stream for the filters (an empty request and
	// response so HTTP properties read as absent).
	s   filter.Stream
	req fasthttp.Request
	res fasthttp.Response

	mu      sync.Mutex // one direction at a time: filters see one call at once
	held    [2][]byte  // bytes a filter held back, per direction
	heldAt  [2]int     // position in the direction's order of the filter that holds them
	closed  bool
	onClose [2]bool
}

// newChain makes the filters for one connection; nil when there are none.
func newChain(fs []ConnFilterFactory, s filter.Stream) *chain {
	if len(fs) == 0 {
		return nil
	}
	c := &chain{s: s}
	c.s.Request, c.s.Response = &c.req, &c.res
	for _, f := range fs {
		if cf := f.NewConnFilter(&c.s); cf != nil {
			c.fs = append(c.fs, cf)
		}
	}
	return c
}

// open runs OnNewConnection on every filter; false closes the connection.
func (c *chain) open() bool {
	for _, f := range c.fs {
		if !f.OnNewConnection() {
			return false
		}
	}
	return true
}

// data passes bytes of one direction (dir 1: from the upstream) through
// the filters; out is what to write on, closeConn ends the connection.
func (c *chain) data(dir int, in []byte, end bool) (out []byte, closeConn bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, true
	}
	data := in
	if len(c.held[dir]) > 0 {
		data = append(c.held[dir], in...)
		c.held[dir] = nil
	}
	n := len(c.fs)
	for i := c.heldAt[dir]; i < n; i++ {
		f := c.fs[i]
		if dir == 1 {
			f = c.fs[n-1-i]
		}
		o, hold, cl := f.OnData(dir == 1, data, end)
		if cl {
			c.closed = true
			return nil, true
		}
		if hold && !end {
			c.held[dir] = append([]byte(nil), o...)
			c.heldAt[dir] = i
			return nil, false
		}
		data = o
	}
	c.heldAt[dir] = 0
	return data, false
}

// close reports a side's close to every filter, once.
func (c *chain) close(upstream bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	if upstream {
		i = 1
	}
	if c.onClose[i] {
		return
	}
	c.onClose[i] = true
	for _, f := range c.fs {
		f.OnClose(upstream)
	}
}

// done ends the filters: both sides' close if not yet reported, then
// OnDone.
func (c *chain) done() {
	c.close(false)
	c.close(true)
	for _, f := range c.fs {
		f.OnDone()
	}
}
