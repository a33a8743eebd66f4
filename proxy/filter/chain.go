package filter

// Chain holds the filters of one stream, in the order they were added:
// the listener's filters first, then the route's. It lives inside a pooled
// per-request object, so adding the usual handful of filters allocates
// nothing.
type Chain struct {
	n      int
	inline [8]StreamFilter
	more   []StreamFilter
	// seen is how many filters have seen the request headers; response
	// callbacks run for those only, last first.
	seen int
}

// Reset empties the chain for reuse.
func (c *Chain) Reset() {
	for i := range c.inline {
		c.inline[i] = nil
	}
	c.more = c.more[:0]
	c.n, c.seen = 0, 0
}

// Len is the number of filters in the chain.
func (c *Chain) Len() int { return c.n }

// At returns filter i.
func (c *Chain) At(i int) StreamFilter {
	if i < len(c.inline) {
		return c.inline[i]
	}
	return c.more[i-len(c.inline)]
}

// Add appends a stream filter made by f for s (nothing when f makes none).
func (c *Chain) Add(f Factory, s *Stream) {
	sf := f.NewStreamFilter(s)
	if sf == nil {
		return
	}
	if c.n < len(c.inline) {
		c.inline[c.n] = sf
	} else {
		c.more = append(c.more, sf)
	}
	c.n++
}

// DecodeFrom runs the request callbacks of filters from..Len-1: every
// filter's headers, then (when there is a body) every filter's body. It
// stops at the first LocalReply.
func (c *Chain) DecodeFrom(s *Stream, from int) Status {
	body := len(s.Request.Body()) > 0
	for i := from; i < c.n; i++ {
		c.seen = i + 1
		if c.At(i).OnRequestHeaders(s, !body && !s.RequestBodyStreamed) == LocalReply {
			return LocalReply
		}
	}
	if body {
		for i := from; i < c.n; i++ {
			if c.At(i).OnRequestBody(s) == LocalReply {
				return LocalReply
			}
		}
	}
	return Continue
}

// Encode runs the response callbacks, last filter first, for the filters
// that saw the request: every filter's headers, then every filter's body.
// A LocalReply replaces the response and ends the iteration.
func (c *Chain) Encode(s *Stream) Status {
	body := len(s.Response.Body()) > 0
	for i := c.seen - 1; i >= 0; i-- {
		if c.At(i).OnResponseHeaders(s, !body && !s.ResponseBodyStreamed) == LocalReply {
			return LocalReply
		}
	}
	if body {
		for i := c.seen - 1; i >= 0; i-- {
			if c.At(i).OnResponseBody(s) == LocalReply {
				return LocalReply
			}
		}
	}
	return Continue
}

// Finish runs OnLog then OnDone on every filter, whatever happened to the
// stream.
func (c *Chain) Finish(s *Stream) {
	for i := 0; i < c.n; i++ {
		c.At(i).OnLog(s)
	}
	for i := 0; i < c.n; i++ {
		c.At(i).OnDone(s)
	}
}
