package jws

import (
	"bytes"
	"hash/maphash"
	"time"
)

// A Set's cache of tokens it found valid, so a client reusing its token
// costs a hash and a compare instead of a signature check, as the auth
// plugin's own cache does in the VM: an entry lives until the token's exp
// plus the skew (no exp: until the set is dropped), and nbf is not checked
// again (it only moves into the past). Bounded in entries and bytes; when
// either is reached it starts over (tokens are checked again, nothing is
// wrongly accepted).

// Bounds of a Set's cache.
const (
	MaxCacheEntries = 4096
	maxCacheBytes   = 1 << 20
	maxCachedToken  = 8 << 10
)

type tokenCache struct {
	seed  maphash.Seed
	max   int
	bytes int
	m     map[uint64]*cached
}

type cached struct {
	token []byte
	res   Result // Values are the entry's own copies
	until time.Time
	size  int // bytes counted in tokenCache.bytes
}

// SetCache makes s remember up to entries valid tokens (0: none).
func (s *Set) SetCache(entries int) {
	entries = min(entries, MaxCacheEntries)
	if entries <= 0 {
		s.cache = nil
		return
	}
	s.cache = &tokenCache{seed: maphash.MakeSeed(), max: entries, m: make(map[uint64]*cached, min(entries, 64))}
}

// VerifyCached is Verify through the set's cache of valid tokens. On OK
// from the cache, r's values are the cache's: read them before the next
// call.
func (s *Set) VerifyCached(token []byte, now time.Time, r *Result) Code {
	c := s.cache
	if c == nil {
		return s.Verify(token, now, r)
	}
	h := maphash.Bytes(c.seed, token)
	if e := c.m[h]; e != nil && bytes.Equal(e.token, token) {
		if e.until.IsZero() || now.Before(e.until) {
			// r keeps its own Values array: Verify appends a later
			// token's values into it, which must not write into the
			// entry (the next answer from the cache for this token
			// would carry another token's claims).
			vals := r.Values[:0]
			*r = e.res
			r.Values = append(vals, e.res.Values...)
			r.Cached = true
			return OK
		}
		c.bytes -= e.size
		delete(c.m, h)
	}
	code := s.Verify(token, now, r)
	if code != OK || len(token) > maxCachedToken {
		return code
	}
	e := &cached{token: bytes.Clone(token), res: *r}
	e.res.Values = make([][]byte, len(r.Values))
	size := len(token)
	for i, v := range r.Values {
		if v != nil {
			e.res.Values[i] = bytes.Clone(v)
			size += len(v)
		}
	}
	if r.HasExp {
		e.until = time.Unix(r.ExpSec, r.ExpNsec).Add(s.skew)
	}
	if len(c.m) >= c.max || c.bytes+size > maxCacheBytes {
		clear(c.m)
		c.bytes = 0
	}
	if old := c.m[h]; old != nil {
		c.bytes -= old.size
	}
	e.size = size
	c.m[h] = e
	c.bytes += size
	return code
}
