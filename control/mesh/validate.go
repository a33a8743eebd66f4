package mesh

import (
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/wasm/oci"
)

// Error is one problem in a mesh: the resource, the field path inside it
// and the reason. File and Line are set for resources read from files.
type Error struct {
	Key    Key    `json:"-"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
}

// Error formats e as "[FILE:LINE: ]Kind namespace/name: field: reason".
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Key.String())
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Reason)
	return b.String()
}

// Errors is every problem found in one mesh.
type Errors []Error

// Error lists the problems, one per line.
func (es Errors) Error() string {
	var s []string
	for _, e := range es {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

// Options are what validation and compilation need from outside the mesh.
type Options struct {
	// HasModule reports whether the registry holds a module digest; nil
	// accepts every well-formed digest.
	HasModule func(sha256 string) bool
	// ModuleURL is where sidecars fetch a module by digest (e.g.
	// "http://control:7070/v1/modules/<sha256>").
	ModuleURL func(sha256 string) string
	// TrustDomain, when set (the control plane runs a CA), compiles mTLS
	// and Policy resources into sidecar configs (security.go).
	TrustDomain string
}

type checker struct {
	m    *Mesh
	o    Options
	errs Errors
	r    *Resource
}

func (c *checker) errf(field, format string, args ...any) {
	c.errs = append(c.errs, Error{Key: c.r.Key(), Field: field, Reason: fmt.Sprintf(format, args...), File: c.r.File, Line: c.r.Line})
}

var (
	labelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)
)

const labelRule = "lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"

// Validate checks the mesh as a whole: every resource on its own, every
// reference (services, versions, filters, sidecars), conflicting rules, and
// module digests against the registry. It returns Errors or nil.
func Validate(m *Mesh, o Options) error {
	c := &checker{m: m, o: o}
	hosts := map[string]Key{}
	ruleOf := map[Key]Key{}
	for _, r := range m.List("") {
		c.r = r
		if r.Kind == KindSidecar {
			if !nodeIDRE.MatchString(r.Name) {
				c.errf("name", "node id %q: use letters, digits, '.', '_' and '-' (at most 253)", r.Name)
			}
		} else if !labelRE.MatchString(r.Name) {
			c.errf("name", "%q is not a valid name: %s", r.Name, labelRule)
		}
		if !labelRE.MatchString(r.Namespace) {
			c.errf("namespace", "%q is not a valid namespace: %s", r.Namespace, labelRule)
		}
		if r.Spec == nil || newSpecMismatch(r) {
			c.errf("spec", "missing or not a %s spec", r.Kind)
			continue
		}
		switch r.Kind {
		case KindService:
			c.service(r.Service(), hosts)
		case KindTrafficRule:
			c.trafficRule(r.TrafficRule(), ruleOf)
		case KindFilter:
			c.filter(r.Filter())
		case KindPolicy:
			c.policy(r.Policy())
		case KindSidecar:
			c.sidecar(r.Sidecar())
		}
	}
	if len(c.errs) > 0 {
		return c.errs
	}
	return nil
}

func newSpecMismatch(r *Resource) bool {
	switch r.Kind {
	case KindService:
		return r.Service() == nil
	case KindTrafficRule:
		return r.TrafficRule() == nil
	case KindFilter:
		return r.Filter() == nil
	case KindPolicy:
		return r.Policy() == nil
	case KindSidecar:
		return r.Sidecar() == nil
	}
	return true
}

// address checks host:port with a port from 1 (0 when allowZero).
func (c *checker) address(field, addr string, allowZero bool) {
	if addr == "" {
		c.errf(field, "address is required (host:port)")
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.errf(field, "address %q is not host:port (e.g. 127.0.0.1:8080)", addr)
		return
	}
	p, err := strconv.Atoi(port)
	min := 1
	if allowZero {
		min = 0
	}
	if err != nil || p < min || p > 65535 {
		c.errf(field, "address %q: port %q is not a number from %d to 65535", addr, port, min)
	}
}

// serviceRef checks that ref names an existing service and returns it.
func (c *checker) serviceRef(field, ref string) (Key, *ServiceSpec) {
	if ref == "" {
		c.errf(field, "service is required")
		return Key{}, nil
	}
	k := ServiceRef(c.r.Namespace, ref)
	s := c.m.Get(k)
	if s == nil {
		c.errf(field, "service %q does not exist (no Service %s/%s)", ref, k.Namespace, k.Name)
		return k, nil
	}
	return k, s.Service()
}

func hasVersion(s *ServiceSpec, v string) bool {
	for _, x := range s.Versions {
		if x.Name == v {
			return true
		}
	}
	return false
}

func versionNames(s *ServiceSpec) string {
	var n []string
	for _, v := range s.Versions {
		n = append(n, strconv.Quote(v.Name))
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

func (c *checker) endpoints(field string, eps []Endpoint) {
	seen := map[string]int{}
	for i, e := range eps {
		f := fmt.Sprintf("%s[%d].address", field, i)
		c.address(f, e.Address, false)
		if j, dup := seen[e.Address]; dup {
			c.errf(f, "endpoint %q is listed twice (also %s[%d])", e.Address, field, j)
		}
		seen[e.Address] = i
		if e.Weight < 0 {
			c.errf(fmt.Sprintf("%s[%d].weight", field, i), "weight must be at least 1, got %d", e.Weight)
		}
		c.metadata(fmt.Sprintf("%s[%d].metadata", field, i), e.Metadata)
	}
}

func (c *checker) dns(field string, d *DNS) {
	if d == nil {
		return
	}
	if d.Name == "" {
		c.errf(field+".name", "name is required")
	}
	if d.Port < 1 || d.Port > 65535 {
		c.errf(field+".port", "port %d is not a number from 1 to 65535", d.Port)
	}
}

func (c *checker) service(s *ServiceSpec, hosts map[string]Key) {
	if len(s.Endpoints) > 0 && s.DNS != nil {
		c.errf("spec", "set endpoints or dns, not both")
	}
	c.endpoints("spec.endpoints", s.Endpoints)
	c.dns("spec.dns", s.DNS)
	static := len(s.Endpoints)
	seen := map[string]bool{}
	for i, v := range s.Versions {
		f := fmt.Sprintf("spec.versions[%d]", i)
		if !labelRE.MatchString(v.Name) {
			c.errf(f+".name", "%q is not a valid version name: %s", v.Name, labelRule)
		}
		if seen[v.Name] {
			c.errf(f+".name", "version %q is declared twice", v.Name)
		}
		seen[v.Name] = true
		switch {
		case len(v.Endpoints) > 0 && v.DNS != nil:
			c.errf(f, "set endpoints or dns, not both")
		case len(v.Endpoints) == 0 && v.DNS == nil:
			c.errf(f+".endpoints", "a version needs endpoints or dns")
		}
		c.endpoints(f+".endpoints", v.Endpoints)
		c.dns(f+".dns", v.DNS)
		c.metadata(f+".metadata", v.Metadata)
		static += len(v.Endpoints)
	}
	c.metadata("spec.metadata", s.Metadata)
	if s.DNS == nil && static == 0 {
		c.errf("spec", "the service has no instances: set endpoints, dns, or versions with endpoints")
	}
	switch s.LB {
	case "", "round_robin", "least_request", "random":
	default:
		c.errf("spec.lb", "unknown value %q; want round_robin, least_request or random", s.LB)
	}
	for i, h := range s.Hosts {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		if h == "" || strings.ContainsAny(h, " \t/?#@*") {
			c.errf(f, "host %q is not a host name (no wildcards)", h)
			continue
		}
		if other, dup := hosts[strings.ToLower(h)]; dup {
			c.errf(f, "host %q is already a host of %s", h, other)
		}
		hosts[strings.ToLower(h)] = c.r.Key()
	}
}

func matchKey(m Match) string {
	b, _ := yaml.Marshal(m)
	return string(b)
}

func (c *checker) trafficRule(t *TrafficRuleSpec, ruleOf map[Key]Key) {
	sk, svc := c.serviceRef("spec.service", t.Service)
	if svc != nil {
		if other, dup := ruleOf[sk]; dup {
			c.errf("spec.service", "conflicting rules: %s already routes service %s/%s; merge the routes into one rule", other, sk.Namespace, sk.Name)
		}
		ruleOf[sk] = c.r.Key()
	}
	if len(t.Routes) == 0 {
		c.errf("spec.routes", "at least one route is required")
	}
	names := map[string]int{}
	matches := map[string]int{}
	catchAll := -1
	for i, rr := range t.Routes {
		f := fmt.Sprintf("spec.routes[%d]", i)
		if rr.Name != "" {
			if !labelRE.MatchString(rr.Name) {
				c.errf(f+".name", "%q is not a valid route name: %s", rr.Name, labelRule)
			}
			if j, dup := names[rr.Name]; dup {
				c.errf(f+".name", "route name %q is also spec.routes[%d]", rr.Name, j)
			}
			names[rr.Name] = i
		}
		c.match(f+".match", rr.Match)
		mk := matchKey(rr.Match)
		if catchAll >= 0 {
			c.errf(f+".match", "conflicting routes: spec.routes[%d] matches every request, so this route is never used; move it up", catchAll)
		} else if j, dup := matches[mk]; dup {
			c.errf(f+".match", "conflicting routes: the same match as spec.routes[%d], so this route is never used", j)
		} else {
			matches[mk] = i
		}
		if catchAll < 0 && isCatchAll(rr.Match) {
			catchAll = i
		}
		if rr.Version != "" && len(rr.Split) > 0 {
			c.errf(f, "set version or split, not both")
		}
		if svc != nil && rr.Version != "" && !hasVersion(svc, rr.Version) {
			c.errf(f+".version", "service %s/%s has no version %q (versions: %s)", sk.Namespace, sk.Name, rr.Version, versionNames(svc))
		}
		if len(rr.Split) > 0 {
			sum := 0
			seen := map[string]bool{}
			for j, sp := range rr.Split {
				sf := fmt.Sprintf("%s.split[%d]", f, j)
				tk, ts := sk, svc
				if sp.Service != "" {
					tk, ts = c.serviceRef(sf+".service", sp.Service)
				}
				if ts != nil && (sp.Service == "" || sp.Version != "") && !hasVersion(ts, sp.Version) {
					c.errf(sf+".version", "service %s/%s has no version %q (versions: %s)", tk.Namespace, tk.Name, sp.Version, versionNames(ts))
				}
				target := tk.Namespace + "/" + tk.Name + ":" + sp.Version
				if seen[target] {
					if sp.Service != "" {
						c.errf(sf, "service %q (version %q) is split twice", sp.Service, sp.Version)
					} else {
						c.errf(sf+".version", "version %q is split twice", sp.Version)
					}
				}
				seen[target] = true
				if sp.Weight < 0 || sp.Weight > 100 {
					c.errf(sf+".weight", "weight %d is not between 0 and 100", sp.Weight)
				}
				sum += sp.Weight
			}
			if sum != 100 {
				c.errf(f+".split", "weights add up to %d, want 100", sum)
			}
		}
		if m := rr.Mirror; m != nil {
			mk, ms := c.serviceRef(f+".mirror.service", m.Service)
			if ms != nil && m.Version != "" && !hasVersion(ms, m.Version) {
				c.errf(f+".mirror.version", "service %s/%s has no version %q (versions: %s)", mk.Namespace, mk.Name, m.Version, versionNames(ms))
			}
			if m.Percent < 0 || m.Percent > 100 {
				c.errf(f+".mirror.percent", "must be between 0 and 100, got %v", m.Percent)
			}
		}
		c.routeAnswer(f, rr)
		if rr.Retry != nil && rr.Retry.Attempts < 0 {
			c.errf(f+".retry.attempts", "must not be negative, got %d", rr.Retry.Attempts)
		}
		for j, fl := range rr.Filters {
			c.filterRef(fmt.Sprintf("%s.filters[%d]", f, j), fl)
		}
		c.metadata(f+".metadata", rr.Metadata)
		if ft := rr.Fault; ft != nil {
			c.filterRef(f+".fault.filter", ft.Filter)
			if ft.Delay == nil && ft.Abort == nil {
				c.errf(f+".fault", "set delay, abort or both")
			}
			if d := ft.Delay; d != nil {
				if d.Duration <= 0 || d.Duration.D() > MaxFaultDelay {
					c.errf(f+".fault.delay.duration", "must be more than 0 and at most %s, got %s", MaxFaultDelay, d.Duration.D())
				}
				if d.Percent < 0 || d.Percent > 100 {
					c.errf(f+".fault.delay.percent", "must be between 0 and 100, got %v", d.Percent)
				}
			}
			for j, h := range ft.Headers {
				if h.Name == "" {
					c.errf(fmt.Sprintf("%s.fault.headers[%d].name", f, j), "name is required")
				}
			}
			if a := ft.Abort; a != nil {
				if a.Status < 200 || a.Status > 599 {
					c.errf(f+".fault.abort.status", "status %d is not between 200 and 599", a.Status)
				}
				if a.Percent < 0 || a.Percent > 100 {
					c.errf(f+".fault.abort.percent", "must be between 0 and 100, got %v", a.Percent)
				}
			}
		}
	}
}

// routeAnswer checks what a route does besides forwarding: rewrites,
// header edits, and answering locally (redirect, direct_response), which
// excludes everything about forwarding.
func (c *checker) routeAnswer(f string, rr RuleRoute) {
	local := ""
	switch {
	case rr.Redirect != nil && rr.DirectResponse != nil:
		c.errf(f, "set redirect or direct_response, not both")
	case rr.Redirect != nil:
		local = "redirect"
	case rr.DirectResponse != nil:
		local = "direct_response"
	}
	if local != "" {
		for _, x := range []struct {
			name string
			set  bool
		}{{"version", rr.Version != ""}, {"split", len(rr.Split) > 0}, {"mirror", rr.Mirror != nil},
			{"retry", rr.Retry != nil}, {"timeout", rr.Timeout != 0}, {"rewrite", rr.Rewrite != nil}} {
			if x.set {
				c.errf(f+"."+x.name, "a route with %s answers locally: it cannot also set %s", local, x.name)
			}
		}
	}
	if r := rr.Redirect; r != nil {
		if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
			c.errf(f+".redirect.path", "%q must start with /", r.Path)
		}
		if r.StatusCode != 0 && (r.StatusCode < 300 || r.StatusCode > 399) {
			c.errf(f+".redirect.status_code", "status %d is not a redirect (300-399)", r.StatusCode)
		}
	}
	if d := rr.DirectResponse; d != nil && (d.Status < 200 || d.Status > 599) {
		c.errf(f+".direct_response.status", "status %d is not between 200 and 599", d.Status)
	}
	if rw := rr.Rewrite; rw != nil {
		if rw.Prefix == "" && rw.Path == "" && rw.Host == "" {
			c.errf(f+".rewrite", "set prefix or path, host, or both")
		}
		if rw.Prefix != "" && rw.Path != "" {
			c.errf(f+".rewrite", "set prefix or path, not both")
		}
		if rw.Path != "" && (!strings.HasPrefix(rw.Path, "/") || strings.ContainsAny(rw.Path, "?#")) {
			c.errf(f+".rewrite.path", "%q must start with / and hold no query", rw.Path)
		}
		if rw.Prefix != "" && !strings.HasPrefix(rw.Prefix, "/") {
			c.errf(f+".rewrite.prefix", "%q must start with /", rw.Prefix)
		}
		if rw.Prefix != "" && rr.Match.Regex != "" {
			c.errf(f+".rewrite.prefix", "a prefix rewrite needs a prefix or path match, not regex")
		}
		if rw.Host != "" && strings.ContainsAny(rw.Host, " \t\r\n/?#@") {
			c.errf(f+".rewrite.host", "%q is not a host", rw.Host)
		}
	}
	for _, hm := range []struct {
		name string
		m    config.HeaderMutation
	}{{"request_headers", rr.RequestHeaders}, {"response_headers", rr.ResponseHeaders}} {
		for j, h := range append(append([]config.Header(nil), hm.m.Set...), hm.m.Add...) {
			if h.Name == "" || strings.ContainsAny(h.Name, " \t\r\n:") {
				c.errf(fmt.Sprintf("%s.%s", f, hm.name), "header %d: %q is not a header name", j, h.Name)
			}
		}
		for j, n := range hm.m.Remove {
			if n == "" {
				c.errf(fmt.Sprintf("%s.%s.remove[%d]", f, hm.name, j), "header name is required")
			}
		}
	}
}

func (c *checker) match(f string, m Match) {
	set := 0
	for _, s := range []string{m.Prefix, m.Path, m.Regex} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		c.errf(f, "set one of prefix, path, regex")
	}
	if m.Prefix != "" && !strings.HasPrefix(m.Prefix, "/") {
		c.errf(f+".prefix", "%q must start with /", m.Prefix)
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		c.errf(f+".path", "%q must start with /", m.Path)
	}
	if m.Regex != "" {
		if _, err := regexp.Compile(m.Regex); err != nil {
			c.errf(f+".regex", "regex %q does not compile (RE2 syntax): %v", m.Regex, err)
		}
	}
	for _, hs := range []struct {
		name string
		ms   []HeaderMatcher
	}{{"headers", m.Headers}, {"query", m.Query}, {"cookies", m.Cookies}} {
		for i, h := range hs.ms {
			if h.Name == "" {
				c.errf(fmt.Sprintf("%s.%s[%d].name", f, hs.name, i), "name is required")
			}
			if h.Regex != "" {
				if _, err := regexp.Compile(h.Regex); err != nil {
					c.errf(fmt.Sprintf("%s.%s[%d].regex", f, hs.name, i), "regex %q does not compile: %v", h.Regex, err)
				}
			}
		}
	}
}

func (c *checker) filterRef(field, name string) {
	if name == "" {
		c.errf(field, "filter name is required")
		return
	}
	r := c.m.Get(Key{Kind: KindFilter, Namespace: c.r.Namespace, Name: name})
	if r == nil {
		c.errf(field, "filter %q does not exist (no Filter %s/%s)", name, c.r.Namespace, name)
	} else if f := r.Filter(); f != nil && f.Singleton {
		c.errf(field, "filter %q is a singleton (a Wasm service on no listener); a route cannot run it", name)
	}
}

// metadata checks Envoy metadata as the sidecar will (config.CheckMetadata).
func (c *checker) metadata(field string, m *config.Metadata) {
	for _, p := range config.CheckMetadata(m) {
		c.errf(field+"."+p.Field, "%s", p.Reason)
	}
}

func (c *checker) filter(f *FilterSpec) {
	d := strings.ToLower(strings.TrimPrefix(f.Module.SHA256, "sha256:"))
	if f.Module.OCI != "" {
		if _, _, err := oci.ParseRef(f.Module.OCI); err != nil {
			c.errf("spec.module.oci", "%q is not an image reference: %v", f.Module.OCI, err)
		}
		switch f.Module.PullPolicy {
		case "", oci.IfNotPresent, oci.Always:
		default:
			c.errf("spec.module.pull_policy", "unknown value %q; want %s or %s", f.Module.PullPolicy, oci.IfNotPresent, oci.Always)
		}
		if v := f.Module.Verify; v != nil {
			if len(v.Keys) == 0 {
				c.errf("spec.module.verify.keys", "list at least one PEM public key")
			}
			for i, k := range v.Keys {
				if _, err := oci.ParsePublicKeys([]byte(k)); err != nil {
					c.errf(fmt.Sprintf("spec.module.verify.keys[%d]", i), "%v", err)
				}
			}
		}
		if d == "" && c.o.HasModule == nil {
			return // offline validation: the control plane pulls it on write
		}
	} else if f.Module.PullPolicy != "" || f.Module.Verify != nil || f.Module.Manifest != "" {
		c.errf("spec.module", "pull_policy, verify and manifest apply only to a module by oci")
	}
	if b, err := hex.DecodeString(d); err != nil || len(b) != 32 {
		c.errf("spec.module.sha256", "sha256 must be 64 hex digits, got %q", f.Module.SHA256)
	} else if c.o.HasModule != nil && !c.o.HasModule(d) {
		c.errf("spec.module.sha256", "module %s is not in the registry; upload it first (POST /v1/modules or weft ctl modules push FILE)", d)
	}
	switch f.FailurePolicy {
	case "", "fail_closed", "fail_open":
	default:
		c.errf("spec.failure_policy", "unknown value %q; want fail_closed or fail_open", f.FailurePolicy)
	}
	if f.LogLevel != "" && !slices.Contains(config.GuestLogLevels, f.LogLevel) {
		c.errf("spec.log_level", "unknown value %q; want one of %s", f.LogLevel, strings.Join(config.GuestLogLevels, ", "))
	}
	if f.PoolSize < 0 {
		c.errf("spec.pool_size", "must not be negative, got %d", f.PoolSize)
	}
	if f.MemoryLimitMiB < 0 || f.MemoryLimitMiB > 4096 {
		c.errf("spec.memory_limit_mib", "%d is outside 0..4096", f.MemoryLimitMiB)
	}
	for i, st := range f.StatsTags {
		for _, p := range config.CheckStatsTag(st) {
			c.errf(fmt.Sprintf("spec.stats_tags[%d].%s", i, p.Field), "%s", p.Reason)
		}
	}
	if f.Singleton {
		switch {
		case f.Apply == nil:
			c.errf("spec.apply", "a singleton runs on the sidecars apply picks: set all: true, services or nodes")
		case f.Apply.Direction != "":
			c.errf("spec.apply.direction", "a singleton runs on no listener; remove direction")
		}
	}
	if a := f.Apply; a != nil {
		if !a.All && len(a.Services) == 0 && len(a.Nodes) == 0 {
			c.errf("spec.apply", "set all: true, services or nodes (or remove apply to run the filter only where routes name it)")
		}
		for i, s := range a.Services {
			c.serviceRef(fmt.Sprintf("spec.apply.services[%d]", i), s)
		}
		for i, n := range a.Nodes {
			if c.m.Get(Key{Kind: KindSidecar, Namespace: c.r.Namespace, Name: n}) == nil && !c.sidecarAnywhere(n) {
				c.errf(fmt.Sprintf("spec.apply.nodes[%d]", i), "no Sidecar has node id %q", n)
			}
		}
		switch a.Direction {
		case "", "outbound", "inbound", "both":
		default:
			c.errf("spec.apply.direction", "unknown value %q; want outbound, inbound or both", a.Direction)
		}
	}
}

func (c *checker) sidecarAnywhere(node string) bool {
	for _, r := range c.m.List(KindSidecar) {
		if r.Name == node {
			return true
		}
	}
	return false
}

func (c *checker) policy(p *PolicySpec) {
	if len(p.Services) == 0 {
		c.errf("spec.services", "at least one service is required")
	}
	for i, s := range p.Services {
		c.serviceRef(fmt.Sprintf("spec.services[%d]", i), s)
	}
	switch p.MTLS {
	case "", "strict", "permissive", "disable":
	default:
		c.errf("spec.mtls", "unknown value %q; want strict, permissive or disable", p.MTLS)
	}
	names := map[string]string{}
	for _, list := range []struct {
		field string
		rules []AccessRule
	}{{"spec.allow", p.Allow}, {"spec.deny", p.Deny}} {
		for i := range list.rules {
			f := fmt.Sprintf("%s[%d]", list.field, i)
			c.accessRule(f, &list.rules[i])
			if n := list.rules[i].Name; n != "" {
				if other, dup := names[n]; dup {
					c.errf(f+".name", "rule name %q is also %s's; names are unique within a policy", n, other)
				}
				names[n] = f
			}
		}
	}
}

func (c *checker) accessRule(f string, a *AccessRule) {
	if a.Name != "" && !labelRE.MatchString(a.Name) {
		c.errf(f+".name", "%q is not a valid rule name: %s", a.Name, labelRule)
	}
	for j, s := range a.From {
		c.serviceRef(fmt.Sprintf("%s.from[%d]", f, j), s)
	}
	for j, pr := range a.Principals {
		if pr != "*" && !strings.HasPrefix(pr, "spiffe://") {
			c.errf(fmt.Sprintf("%s.principals[%d]", f, j), "principal %q must be a SPIFFE ID (spiffe://TRUST-DOMAIN/ns/NS/sa/SA, or .../ns/NS/* for a namespace) or \"*\"; name calling services in from", pr)
		}
	}
	for j, pr := range a.RequestPrincipals {
		if pr == "" {
			c.errf(fmt.Sprintf("%s.request_principals[%d]", f, j), "empty principal; use \"*\" for any verified token")
		}
	}
	for j, path := range a.Paths {
		switch {
		case !strings.HasPrefix(path, "/"):
			c.errf(fmt.Sprintf("%s.paths[%d]", f, j), "path %q must start with \"/\"", path)
		case strings.Contains(path, "***"):
			c.errf(fmt.Sprintf("%s.paths[%d]", f, j), "path %q: use \"*\" (within a segment) or \"**\" (across segments)", path)
		}
	}
	for j, m := range a.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t/:") {
			c.errf(fmt.Sprintf("%s.methods[%d]", f, j), "method %q: write an upper-case HTTP method (GET, POST, ...)", m)
		}
	}
	for j, h := range a.Headers {
		if h.Name == "" {
			c.errf(fmt.Sprintf("%s.headers[%d].name", f, j), "a header name is required")
		}
	}
	for j, port := range a.Ports {
		if port < 1 || port > 65535 {
			c.errf(fmt.Sprintf("%s.ports[%d]", f, j), "port %d is not a number from 1 to 65535", port)
		}
	}
}

func (c *checker) sidecar(s *SidecarSpec) {
	if s.Service != "" {
		c.serviceRef("spec.service", s.Service)
	}
	c.address("spec.outbound", s.Outbound, true)
	if s.Inbound != "" {
		c.address("spec.inbound", s.Inbound, true)
		if s.App == "" {
			c.errf("spec.app", "an inbound listener needs app: the local app's address")
		}
	}
	if s.App != "" {
		c.address("spec.app", s.App, false)
	}
	if s.Admin != "" && s.Admin != "off" {
		c.address("spec.admin", s.Admin, true)
	}
	for i, e := range s.Egress {
		c.serviceRef(fmt.Sprintf("spec.egress[%d]", i), e)
	}
	if s.ServiceAccount != "" && !validSegment(s.ServiceAccount) {
		c.errf("spec.service_account", "service account %q: use letters, digits, '.', '-', '_' (it is a SPIFFE ID path segment)", s.ServiceAccount)
	}
	c.metadata("spec.metadata", s.Metadata)
	if s.Inbound != "" && s.Inbound == s.Outbound && !strings.HasSuffix(s.Inbound, ":0") {
		c.errf("spec.inbound", "inbound and outbound both use %q", s.Inbound)
	}
}
