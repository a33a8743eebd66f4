package main

import "time"

// tokenCache remembers validated tokens until they expire, so a client
// reusing its token costs a map lookup instead of a signature check. It is
// cleared when the keys change. Bounded: when full it starts over (tokens
// are re-validated, nothing is wrongly accepted).
type tokenCache struct {
	max int
	m   map[string]cachedToken
}

type cachedToken struct {
	claims claims
	until  time.Time // zero: no exp claim
}

func (c *tokenCache) init(max int) {
	c.max = max
	if max > 0 {
		c.m = make(map[string]cachedToken, min(max, 64))
	}
}

func (c *tokenCache) get(tok string, now time.Time) (claims, bool) {
	if c.m == nil {
		return nil, false
	}
	e, ok := c.m[tok]
	if !ok {
		return nil, false
	}
	if !e.until.IsZero() && !now.Before(e.until) {
		delete(c.m, tok)
		return nil, false
	}
	return e.claims, true
}

func (c *tokenCache) put(tok string, cl claims, until, now time.Time) {
	if c.m == nil {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[tok] = cachedToken{claims: cl, until: until}
}

func (c *tokenCache) clear() {
	if c.m != nil {
		clear(c.m)
	}
}
