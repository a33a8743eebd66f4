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
	// A stream's body data held back by a filter that answered
	// StopAndBuffer: the filter's index (-1: none; reset with the chain
	// via stopped flags) and the data it holds.
	reqStopped, respStopped bool
	reqStop, respStop       int
	reqBuf, respBuf         []byte
}

// Reset empties the chain for reuse.
func (c *Chain) Reset() {
	for i := range c.inline {
		c.inline[i] = nil
	}
	c.more = c.more[:0]
	c.n, c.seen = 0, 0
	c.reqStopped, c.respStopped = false, false
	c.reqBuf, c.respBuf = c.reqBuf[:0], c.respBuf[:0]
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
			if c.At(i).OnRequestBody(s, true) == LocalReply {
				return LocalReply
			}
		}
	}
	return Continue
}

// DecodeData runs the request body callbacks, in order, on one chunk of a
// streamed body (Stream.Request's body holds it on entry). A filter that
// answers StopAndBuffer keeps the data: DecodeData returns StopAndBuffer
// and the next call gives that filter the held data with the new chunk
// appended (the filters before it see only the new chunk). On Continue,
// Stream.Request's body is what goes upstream. endOfStream marks the last
// chunk (trailers may still follow when it is false at the end).
func (c *Chain) DecodeData(s *Stream, endOfStream bool) Status {
	for i := 0; i < c.seen; i++ {
		if c.reqStopped && i == c.reqStop {
			c.reqStopped = false
			c.reqBuf = append(c.reqBuf, s.Request.Body()...)
			s.Request.SetBodyRaw(c.reqBuf)
		}
		switch c.At(i).OnRequestBody(s, endOfStream) {
		case LocalReply:
			return LocalReply
		case StopAndBuffer:
			if endOfStream {
				continue // nothing more will come: let it through
			}
			c.reqStopped, c.reqStop = true, i
			c.reqBuf = append(c.reqBuf[:0], s.Request.Body()...)
			return StopAndBuffer
		}
	}
	return Continue
}

// DecodeTrailers runs the request trailers callbacks, in order.
func (c *Chain) DecodeTrailers(s *Stream) Status {
	for i := 0; i < c.seen; i++ {
		if c.At(i).OnRequestTrailers(s) == LocalReply {
			return LocalReply
		}
	}
	return Continue
}

// EncodeData is DecodeData for the response, last filter first, on
// Stream.Response's body.
func (c *Chain) EncodeData(s *Stream, endOfStream bool) Status {
	for i := c.seen - 1; i >= 0; i-- {
		if c.respStopped && i == c.respStop {
			c.respStopped = false
			c.respBuf = append(c.respBuf, s.Response.Body()...)
			s.Response.SetBodyRaw(c.respBuf)
		}
		switch c.At(i).OnResponseBody(s, endOfStream) {
		case LocalReply:
			return LocalReply
		case StopAndBuffer:
			if endOfStream {
				continue
			}
			c.respStopped, c.respStop = true, i
			c.respBuf = append(c.respBuf[:0], s.Response.Body()...)
			return StopAndBuffer
		}
	}
	return Continue
}

// EncodeTrailers runs the response trailers callbacks, last filter first.
func (c *Chain) EncodeTrailers(s *Stream) Status {
	for i := c.seen - 1; i >= 0; i-- {
		if c.At(i).OnResponseTrailers(s) == LocalReply {
			return LocalReply
		}
	}
	return Continue
}

// Buffered reports whether a filter holds back body data (request or
// response): a stream that ends must still pass it on.
func (c *Chain) Buffered(response bool) bool {
	if response {
		return c.respStopped
	}
	return c.reqStopped
}

// Encode runs the response callbacks, last filter first, for the filters
// that saw the request: every filter's headers, then every filter's body.
// A LocalReply replaces the response and ends the iteration.
//
// With one filter and a body, a filter that is a ResponseCombiner gets
// both in one call (OnResponse): nothing runs between them then, so
// nothing can tell.
func (c *Chain) Encode(s *Stream) Status {
	body := len(s.Response.Body()) > 0
	if body && c.seen == 1 {
		if rc, ok := c.At(0).(ResponseCombiner); ok {
			return rc.OnResponse(s)
		}
	}
	for i := c.seen - 1; i >= 0; i-- {
		if c.At(i).OnResponseHeaders(s, !body && !s.ResponseBodyStreamed) == LocalReply {
			return LocalReply
		}
	}
	if body {
		for i := c.seen - 1; i >= 0; i-- {
			if c.At(i).OnResponseBody(s, true) == LocalReply {
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
