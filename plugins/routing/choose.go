package main

import "strings"

// request is what the chooser needs to know of a request.
type request interface {
	header(name string) (string, bool)
}

// drawer gives the random number a split without a sticky key uses. It is
// asked only when the split draws: a request a rule or a sticky key
// decides costs no random number.
type drawer interface{ Uint64() uint64 }

// fixed is a drawer that always gives the same number.
type fixed uint64

func (f fixed) Uint64() uint64 { return uint64(f) }

// choose returns the version for r (and false when none applies). draw is
// a uniform random number used when the split is not sticky.
func (c *Config) choose(r request, draw uint64) (string, bool) {
	i := c.chooseIndex(r, fixed(draw))
	if i < 0 {
		return "", false
	}
	return c.choices[i], true
}

// chooseIndex is choose giving the index of the choice in c.choices (each
// rule, then each split version, then the default), or -1; rnd is asked
// for a number only when the split draws one.
func (c *Config) chooseIndex(r request, rnd drawer) int {
	var cookies string
	var haveCookies, cookiesRead bool
	cookie := func(name string) (string, bool) {
		if !cookiesRead {
			cookies, haveCookies = r.header("cookie")
			cookiesRead = true
		}
		if !haveCookies {
			return "", false
		}
		return cookieValue(cookies, name)
	}
	for i, rule := range c.Rules {
		var v string
		var ok bool
		var m *Match
		if rule.Header != nil {
			m = rule.Header
			v, ok = r.header(m.Name)
		} else {
			m = rule.Cookie
			v, ok = cookie(m.Name)
		}
		if ok && (m.Value == "" || v == m.Value) {
			return i
		}
	}
	if s := c.Split; s != nil {
		key, sticky := "", false
		switch {
		case s.StickyHeader != "":
			key, sticky = r.header(s.StickyHeader)
		case s.StickyCookie != "":
			key, sticky = cookie(s.StickyCookie)
		}
		var draw uint64
		if sticky && key != "" {
			draw = fnv1a(key)
		} else {
			draw = rnd.Uint64()
		}
		return len(c.Rules) + pick(s.Versions, s.sum, draw)
	}
	if c.Default != "" {
		return len(c.choices) - 1
	}
	return -1
}

// pick maps draw onto the weights (adding up to n) and returns the index
// of the version chosen.
func pick(ws []Weighted, n, draw uint64) int {
	x := draw % n
	for i, w := range ws {
		if x < uint64(w.Weight) {
			return i
		}
		x -= uint64(w.Weight)
	}
	return len(ws) - 1
}

// fnv1a hashes a sticky key (FNV-1a 64, then a final mix so nearby keys
// spread across the weights).
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// cookieValue finds name in a Cookie header ("a=1; b=2").
func cookieValue(header, name string) (string, bool) {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}
