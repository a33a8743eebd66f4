package main

import "strings"

// request is what the chooser needs to know of a request.
type request interface {
	header(name string) (string, bool)
}

// choose returns the version for r (and false when none applies). draw is
// a uniform random number used when the split is not sticky.
func (c *Config) choose(r request, draw uint64) (string, bool) {
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
	for _, rule := range c.Rules {
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
			return rule.Version, true
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
		if sticky && key != "" {
			draw = fnv1a(key)
		}
		return pick(s.Versions, draw), true
	}
	if c.Default != "" {
		return c.Default, true
	}
	return "", false
}

// pick maps draw onto the weights.
func pick(ws []Weighted, draw uint64) string {
	n := uint64(total(ws))
	x := draw % n
	for _, w := range ws {
		if x < uint64(w.Weight) {
			return w.Version
		}
		x -= uint64(w.Weight)
	}
	return ws[len(ws)-1].Version
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
