package authz

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/identity"
)

// Header is the response header a denial carries: "denied:RULE".
const Header = "X-Weft-Authz"

// DefaultRule is the rule name of a denial no rule matched.
const DefaultRule = "default"

// Metrics counts denials (weft_authz_denied_total{listener,rule}) and
// dry-run denials (weft_authz_dry_run_denied_total{listener,rule}).
type Metrics struct {
	denied, dryRun *prometheus.CounterVec
}

// NewMetrics makes the denial counters; register Collector once.
func NewMetrics() *Metrics {
	return &Metrics{
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_authz_denied_total",
			Help: "Requests refused by a listener's authorization policy, by listener and rule (default: no rule matched).",
		}, []string{"listener", "rule"}),
		dryRun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_authz_dry_run_denied_total",
			Help: "Requests a listener's dry-run authorization policy would have refused (and did not), by listener and rule.",
		}, []string{"listener", "rule"}),
	}
}

// Collector is what to register with a Prometheus registry.
func (m *Metrics) Collector() prometheus.Collector { return collectors{m.denied, m.dryRun} }

type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// Policy is one listener's compiled authorization. Safe for concurrent use.
type Policy struct {
	listener   string
	defaultOK  bool
	jwtHeader  []byte // canonical
	deny       []*rule
	allow      []*rule
	defaultHit *Denial
	// dryRun is checked on what this policy allows; its denials are only
	// counted (in the dry-run metric) and reported by DryRun.
	dryRun *Policy
}

// Denial is why a request was refused.
type Denial struct {
	// Rule is the deny rule that matched, or DefaultRule.
	Rule string
	// Value is the X-Weft-Authz header value, "denied:RULE".
	Value   []byte
	counter prometheus.Counter
}

type rule struct {
	name       string
	principals []string
	reqPrinc   []string
	methods    [][]byte
	exact      [][]byte
	prefixes   [][]byte
	globs      []*regexp.Regexp
	headers    []headerMatch
	ports      []int
	hit        *Denial
}

type headerMatch struct {
	key    []byte // canonical
	kind   uint8
	value  []byte
	re     *regexp.Regexp
	invert bool
}

const (
	hExact uint8 = iota
	hPrefix
	hRegex
	hPresent
	hAbsent
)

// Compile builds a listener's policy. a must be validated (config.Validate);
// Compile still refuses what it cannot compile. m may be nil (no metrics).
func Compile(listener string, a *config.Authz, m *Metrics) (*Policy, error) {
	p, err := compile(listener, a, m, false)
	if err != nil {
		return nil, err
	}
	if a.DryRun != nil {
		if p.dryRun, err = compile(listener, &config.Authz{Default: a.DryRun.Default, Rules: a.DryRun.Rules}, m, true); err != nil {
			return nil, fmt.Errorf("dry_run: %w", err)
		}
		p.dryRun.jwtHeader = p.jwtHeader
	}
	return p, nil
}

func compile(listener string, a *config.Authz, m *Metrics, dry bool) (*Policy, error) {
	p := &Policy{listener: listener, defaultOK: a.Default != "deny"}
	h := a.RequestPrincipalHeader
	if h == "" {
		h = config.DefaultRequestPrincipal
	}
	p.jwtHeader = canonical(h)
	newDenial := func(listener, name string, m *Metrics) *Denial { return newDenial(listener, name, m, dry) }
	p.defaultHit = newDenial(listener, DefaultRule, m)
	for i := range a.Rules {
		cr := &a.Rules[i]
		r, err := compileRule(cr)
		if err != nil {
			return nil, fmt.Errorf("listener %q: authz: rules[%d] %q: %w", listener, i, cr.Name, err)
		}
		switch cr.Action {
		case "deny":
			r.hit = newDenial(listener, cr.Name, m)
			p.deny = append(p.deny, r)
		case "allow":
			p.allow = append(p.allow, r)
		default:
			return nil, fmt.Errorf("listener %q: authz: rules[%d] %q: action %q is not allow or deny", listener, i, cr.Name, cr.Action)
		}
	}
	return p, nil
}

func newDenial(listener, name string, m *Metrics, dry bool) *Denial {
	d := &Denial{Rule: name, Value: []byte("denied:" + name)}
	switch {
	case m != nil && dry:
		d.counter = m.dryRun.WithLabelValues(listener, name)
	case m != nil:
		d.counter = m.denied.WithLabelValues(listener, name)
	}
	return d
}

func compileRule(cr *config.AuthzRule) (*rule, error) {
	r := &rule{name: cr.Name, ports: cr.Ports, reqPrinc: cr.RequestPrincipals}
	for _, p := range cr.Principals {
		if err := identity.CheckPattern(p); err != nil {
			return nil, fmt.Errorf("principals: %w", err)
		}
		r.principals = append(r.principals, p)
	}
	for _, m := range cr.Methods {
		r.methods = append(r.methods, []byte(m))
	}
	for _, path := range cr.Paths {
		pre, prefix := strings.CutSuffix(path, "*")
		if deep, ok := strings.CutSuffix(path, "**"); ok && !strings.Contains(deep, "*") {
			pre, prefix = deep, true // "/api/**" is the prefix "/api/"
		}
		switch {
		case prefix && !strings.Contains(pre, "*"):
			r.prefixes = append(r.prefixes, []byte(pre))
		case strings.Contains(path, "*"):
			if !utf8.ValidString(path) {
				return nil, fmt.Errorf("paths: %q is not UTF-8", path)
			}
			r.globs = append(r.globs, globRegexp(path))
		default:
			r.exact = append(r.exact, []byte(path))
		}
	}
	for i, hm := range cr.Headers {
		c := headerMatch{key: canonical(hm.Name), invert: hm.Invert}
		switch {
		case hm.Exact != "":
			c.kind, c.value = hExact, []byte(hm.Exact)
		case hm.Prefix != "":
			c.kind, c.value = hPrefix, []byte(hm.Prefix)
		case hm.Regex != "":
			re, err := regexp.Compile("^(?:" + hm.Regex + ")$")
			if err != nil {
				return nil, fmt.Errorf("headers[%d]: %w", i, err)
			}
			c.kind, c.re = hRegex, re
		case hm.Present:
			c.kind = hPresent
		case hm.Absent:
			c.kind = hAbsent
		default:
			return nil, fmt.Errorf("headers[%d] %q: no condition", i, hm.Name)
		}
		r.headers = append(r.headers, c)
	}
	return r, nil
}

// canonical is fasthttp's canonical form of a header name (Content-Type).
func canonical(name string) []byte {
	b := []byte(strings.ToLower(name))
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
	return b
}

// StripRequestPrincipal removes the JWT principal header from a downstream
// request, so only a filter that verified a token can set it.
func (p *Policy) StripRequestPrincipal(h *fasthttp.RequestHeader) { h.DelBytes(p.jwtHeader) }

// Check decides s: nil when allowed, else why not (the denial is counted).
// It reads the peer principal from s.TLS (set only for verified mTLS
// peers), the request principal header, method, path, headers and the
// listener's port. It allocates nothing.
func (p *Policy) Check(s *filter.Stream) *Denial {
	principal := ""
	if s.TLS != nil && s.TLS.MTLS {
		principal = s.TLS.PeerURISAN
	}
	port := 0
	if a, ok := s.Destination.(*net.TCPAddr); ok {
		port = a.Port
	}
	req := s.Request
	for _, r := range p.deny {
		if r.matches(p, req, principal, port) {
			if r.hit.counter != nil {
				r.hit.counter.Inc()
			}
			return r.hit
		}
	}
	for _, r := range p.allow {
		if r.matches(p, req, principal, port) {
			return nil
		}
	}
	if p.defaultOK {
		return nil
	}
	if p.defaultHit.counter != nil {
		p.defaultHit.counter.Inc()
	}
	return p.defaultHit
}

// HasDryRun reports whether the policy has a dry-run policy.
func (p *Policy) HasDryRun() bool { return p.dryRun != nil }

// DryRun checks s, which Check allowed, against the dry-run policy: nil
// when it would be allowed too, else the denial it would have had (counted
// in weft_authz_dry_run_denied_total, and not enforced).
func (p *Policy) DryRun(s *filter.Stream) *Denial {
	if p.dryRun == nil {
		return nil
	}
	return p.dryRun.Check(s)
}

func (r *rule) matches(p *Policy, req *fasthttp.Request, principal string, port int) bool {
	if len(r.principals) > 0 {
		ok := false
		for _, pat := range r.principals {
			if identity.MatchPattern(pat, principal) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.reqPrinc) > 0 {
		v := req.Header.PeekBytes(p.jwtHeader)
		ok := false
		for _, pat := range r.reqPrinc {
			if matchRequestPrincipal(pat, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.methods) > 0 {
		m := req.Header.Method()
		ok := false
		for _, want := range r.methods {
			if bytes.Equal(m, want) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.exact)+len(r.prefixes)+len(r.globs) > 0 {
		path := req.URI().Path()
		ok := false
		for _, e := range r.exact {
			if bytes.Equal(path, e) {
				ok = true
				break
			}
		}
		for _, pre := range r.prefixes {
			if ok {
				break
			}
			ok = bytes.HasPrefix(path, pre)
		}
		for _, g := range r.globs {
			if ok {
				break
			}
			ok = g.Match(path)
		}
		if !ok {
			return false
		}
	}
	for i := range r.headers {
		if !r.headers[i].matches(&req.Header) {
			return false
		}
	}
	if len(r.ports) > 0 {
		ok := false
		for _, want := range r.ports {
			ok = ok || want == port
		}
		if !ok {
			return false
		}
	}
	return true
}

func matchRequestPrincipal(pat string, v []byte) bool {
	if len(v) == 0 {
		return false
	}
	if pat == "*" {
		return true
	}
	if pre, ok := strings.CutSuffix(pat, "*"); ok {
		return len(v) >= len(pre) && string(v[:len(pre)]) == pre
	}
	return string(v) == pat
}

func (h *headerMatch) matches(hdr *fasthttp.RequestHeader) bool {
	v := hdr.PeekBytes(h.key)
	var ok bool
	switch h.kind {
	case hExact:
		ok = v != nil && bytes.Equal(v, h.value)
	case hPrefix:
		ok = v != nil && bytes.HasPrefix(v, h.value)
	case hRegex:
		ok = v != nil && h.re.Match(v)
	case hPresent:
		ok = v != nil
	case hAbsent:
		ok = v == nil
	}
	return ok != h.invert
}

// globRegexp compiles a path glob: "*" stands for any run of characters
// but "/" (within one segment), "**" for any run at all; every other byte
// is itself (glob must be UTF-8). A regular expression (RE2) matches in time linear in the
// path whatever the pattern, where backtracking over stars would not.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?s)^")
	for i := 0; i < len(glob); {
		switch {
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i += 2
		case glob[i] == '*':
			b.WriteString("[^/]*")
			i++
		default:
			j := i
			for j < len(glob) && glob[j] != '*' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(glob[i:j]))
			i = j
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
