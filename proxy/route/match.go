package route

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// pathKind says how a route compares the request path.
type pathKind uint8

const (
	pathPrefix pathKind = iota // the path starts with the string
	pathExact                  // the path is the string
	pathRegex                  // the regex matches the whole path
)

// matcher is a compiled config.Match. Every comparison runs on fasthttp's
// []byte views, so matching allocates nothing.
type matcher struct {
	kind    pathKind
	path    []byte
	re      *regexp.Regexp
	methods [][]byte
	headers []valueMatcher
	query   []valueMatcher
	cookies []valueMatcher
}

// valueKind says how a header, query parameter or cookie is compared.
type valueKind uint8

const (
	valueExact valueKind = iota
	valuePrefix
	valueRegex
	valuePresent
	valueAbsent
)

// valueMatcher is a compiled config.HeaderMatcher. A value counts as present
// when it is non-empty: fasthttp does not tell an empty header from a
// missing one reliably.
type valueMatcher struct {
	name   string
	kind   valueKind
	value  []byte
	re     *regexp.Regexp
	invert bool
}

// compileWhole compiles re so that it must match the whole input.
func compileWhole(re string) (*regexp.Regexp, error) {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		// Report the error against what the user wrote.
		if _, err2 := regexp.Compile(re); err2 != nil {
			err = err2
		}
		return nil, fmt.Errorf("regex %q (Go RE2 syntax): %w", re, err)
	}
	return r, nil
}

func compileMatch(m *config.Match) (matcher, error) {
	var c matcher
	n := 0
	for _, s := range []string{m.Prefix, m.Path, m.Regex} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return c, fmt.Errorf("match: set only one of prefix, path, regex")
	case m.Path != "":
		c.kind, c.path = pathExact, []byte(m.Path)
	case m.Regex != "":
		re, err := compileWhole(m.Regex)
		if err != nil {
			return c, fmt.Errorf("match: %w", err)
		}
		c.kind, c.re = pathRegex, re
	default:
		p := m.Prefix
		if p == "" {
			p = "/"
		}
		c.kind, c.path = pathPrefix, []byte(p)
	}
	for _, meth := range m.Methods {
		c.methods = append(c.methods, []byte(meth))
	}
	var err error
	if c.headers, err = compileValues("header", m.Headers); err != nil {
		return c, err
	}
	if c.query, err = compileValues("query", m.Query); err != nil {
		return c, err
	}
	if c.cookies, err = compileValues("cookie", m.Cookies); err != nil {
		return c, err
	}
	return c, nil
}

func compileValues(what string, hs []config.HeaderMatcher) ([]valueMatcher, error) {
	var out []valueMatcher
	for i, h := range hs {
		v := valueMatcher{name: h.Name, invert: h.Invert}
		if what == "header" {
			// fasthttp normalises the name on lookup anyway; when a server
			// turns normalising off, the canonical form is still what most
			// clients send.
			v.name = canonicalHeader(h.Name)
		}
		n := 0
		if h.Exact != "" {
			v.kind, v.value = valueExact, []byte(h.Exact)
			n++
		}
		if h.Prefix != "" {
			v.kind, v.value = valuePrefix, []byte(h.Prefix)
			n++
		}
		if h.Regex != "" {
			re, err := compileWhole(h.Regex)
			if err != nil {
				return nil, fmt.Errorf("match: %s %d (%q): %w", what, i, h.Name, err)
			}
			v.kind, v.re = valueRegex, re
			n++
		}
		if h.Present {
			v.kind = valuePresent
			n++
		}
		if h.Absent {
			v.kind = valueAbsent
			n++
		}
		if h.Name == "" || n != 1 {
			return nil, fmt.Errorf("match: %s %d (%q): needs a name and exactly one of exact, prefix, regex, present, absent", what, i, h.Name)
		}
		out = append(out, v)
	}
	return out, nil
}

// canonicalHeader writes a header name as fasthttp stores it
// ("x-user-id" → "X-User-Id").
func canonicalHeader(name string) string {
	b := []byte(strings.ToLower(name))
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
		upper = c == '-'
	}
	return string(b)
}

func (m *matcher) matches(req *fasthttp.Request, uri *fasthttp.URI, path, method []byte) bool {
	switch m.kind {
	case pathPrefix:
		if !bytes.HasPrefix(path, m.path) {
			return false
		}
	case pathExact:
		if !bytes.Equal(path, m.path) {
			return false
		}
	case pathRegex:
		if !m.re.Match(path) {
			return false
		}
	}
	if len(m.methods) > 0 {
		ok := false
		for _, mm := range m.methods {
			if bytes.Equal(method, mm) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range m.headers {
		if !m.headers[i].matches(req.Header.Peek(m.headers[i].name)) {
			return false
		}
	}
	if len(m.query) > 0 {
		args := uri.QueryArgs()
		for i := range m.query {
			if !m.query[i].matches(args.Peek(m.query[i].name)) {
				return false
			}
		}
	}
	for i := range m.cookies {
		if !m.cookies[i].matches(req.Header.Cookie(m.cookies[i].name)) {
			return false
		}
	}
	return true
}

func (v *valueMatcher) matches(val []byte) bool {
	var ok bool
	switch v.kind {
	case valueExact:
		ok = bytes.Equal(val, v.value)
	case valuePrefix:
		ok = bytes.HasPrefix(val, v.value)
	case valueRegex:
		ok = len(val) > 0 && v.re.Match(val)
	case valuePresent:
		ok = len(val) > 0
	case valueAbsent:
		ok = len(val) == 0
	}
	return ok != v.invert
}
