package config

import (
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/proxy/wasm/oci"
)

// FieldError is one problem in a config and its place: the file, the line in
// it and the field path, e.g.
// "mesh.yaml:14: listeners[0].virtual_hosts[0].routes[2].route.weighted_clusters: weights add up to 90, want 100".
type FieldError struct {
	// File is the name given to Parse or Validate.
	File string
	// Line is the 1-based source line; 0 when unknown (no source given).
	Line int
	// Path is the field path in YAML names; "" when unknown (a syntax error).
	Path string
	// Reason says what is wrong and, where it helps, what to write instead.
	Reason string
}

// Error formats e as "FILE:LINE: PATH: reason", leaving out the parts that
// are unknown.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in one config, in source order. Parse and
// Validate return it (as error) so callers can inspect each problem with
// errors.As.
type Errors []FieldError

// maxReported bounds how many problems Errors.Error lists.
const maxReported = 20

// Error lists the first 20 problems, one per line, and says how many more
// there are.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i == maxReported {
			fmt.Fprintf(&b, "\n... and %d more errors", len(es)-maxReported)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Known values of the enumerated fields.
var (
	retryOnValues = []string{"5xx", "gateway-error", "connect-failure", "reset", "retriable-status-codes",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
	lbPolicies        = []string{"round_robin", "least_request", "random", "ring_hash"}
	clusterProtocols  = []string{"http1", "http2", "auto"}
	redirectStatuses  = []int{301, 302, 303, 307, 308}
	accessLogFieldSet = []string{
		"start_time", "method", "path", "authority", "protocol", "status", "response_flags",
		"bytes_received", "bytes_sent", "duration_ms", "upstream_host", "upstream_cluster",
		"route", "request_id", "user_agent", "x_forwarded_for", "downstream_remote",
		"peer_principal", "trace_id", "retries",
	}
)

// AccessLogFields returns the field names an access log line can carry, in
// the order a line shows them. An access_log with no fields logs all of them.
func AccessLogFields() []string { return append([]string(nil), accessLogFieldSet...) }

// Validate checks c as a whole and returns every problem found (as Errors),
// or nil. name and data are the file name and YAML the config came from, used
// to put a line on each problem; data may be nil (a config built in code or
// received as JSON), and then problems carry only the field path. Validate
// accepts a config with or without defaults applied; it does not change c.
func Validate(name string, data []byte, c *Config) error {
	return validate(name, data, c, nil)
}

// validate is Validate, told which clusters are known valid (checked in a
// config before, unchanged since): the checks of a cluster on its own
// are skipped for those, those against the rest of the config are not.
func validate(name string, data []byte, c *Config, validClusters []bool) error {
	if c == nil {
		return Errors{{File: name, Reason: "no config"}}
	}
	v := &validator{data: data, validClusters: validClusters}
	v.config(c)
	if len(v.errs) == 0 {
		return nil
	}
	for i := range v.errs {
		v.errs[i].File = name
		v.errs[i].Line = v.index().line(v.errs[i].Path)
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return v.errs
}

// validator collects problems while walking a config.
type validator struct {
	// data is the source; ix indexes its lines, built only when a problem
	// needs a line number (a valid config, the common case, never pays
	// for a second parse).
	data     []byte
	ix       *lineIndex
	errs     Errors
	clusters map[string]bool
	filters  map[string]bool
	// validClusters[i] says clusters[i] needs no checks of its own.
	validClusters []bool
}

func (v *validator) index() *lineIndex {
	if v.ix == nil {
		v.ix = newLineIndex(v.data)
	}
	return v.ix
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

// names tracks one namespace of unique names.
type names map[string]string // name → path of its first use

// unique records name at path and reports a duplicate. Empty names are
// reported by the caller as missing, not here.
func (v *validator) unique(seen names, path, what, name string) {
	if name == "" {
		return
	}
	if first, dup := seen[name]; dup {
		where := first
		if l := v.index().line(first); l > 0 {
			where = fmt.Sprintf("%s (line %d)", first, l)
		}
		v.errf(path, "duplicate %s %q: %s already uses it", what, name, where)
		return
	}
	seen[name] = path
}

func (v *validator) required(path, what, value string) bool {
	if strings.TrimSpace(value) == "" {
		v.errf(path, "%s is required", what)
		return false
	}
	return true
}

func (v *validator) nonNegative(path string, n int) {
	if n < 0 {
		v.errf(path, "must not be negative, got %d", n)
	}
}

func (v *validator) duration(path string, d Duration) {
	if d < 0 {
		v.errf(path, "must not be negative, got %s", time.Duration(d))
	}
}

func (v *validator) percent(path string, p float64) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		v.errf(path, "must be between 0 and 100, got %v", p)
	}
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	if value == "" {
		return
	}
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.errf(path, "unknown value %q; want one of %s", value, strings.Join(allowed, ", "))
}

func (v *validator) status(path string, s int) {
	if s < 100 || s > 599 {
		v.errf(path, "status %d is not between 100 and 599", s)
	}
}

// address checks a host:port. A listener may use port 0 (any free port);
// an upstream may not.
func (v *validator) address(path, addr string, allowPortZero, requireHost bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(path, "address %q is not host:port (e.g. 127.0.0.1:8080): %v", addr, unwrapAddrErr(err))
		return
	}
	if requireHost && host == "" {
		v.errf(path, "address %q has no host", addr)
	}
	p, err := strconv.Atoi(port)
	min := 1
	if allowPortZero {
		min = 0
	}
	if err != nil || p < min || p > 65535 {
		v.errf(path, "address %q: port %q is not a number from %d to 65535", addr, port, min)
	}
}

func unwrapAddrErr(err error) string {
	if ae, ok := err.(*net.AddrError); ok {
		return ae.Err
	}
	return err.Error()
}

// validToken reports whether s is an HTTP token (header names, methods).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func (v *validator) headerName(path, name string) {
	if !v.required(path, "name", name) {
		return
	}
	if !validToken(name) {
		v.errf(path, "header name %q has characters a header name cannot have", name)
	}
}

func (v *validator) regex(path, re string) {
	if _, err := regexp.Compile(re); err != nil {
		v.errf(path, "regex %q does not compile (Go RE2 syntax: no backreferences or lookaround): %v", re, err)
	}
}

func (v *validator) config(c *Config) {
	if a := c.Admin.Address; a != "" && a != "off" {
		v.address("admin.address", a, true, false)
	}
	v.tracing("tracing", &c.Tracing)

	// Clusters and filters first: listeners and routes refer to them.
	v.clusters = map[string]bool{}
	seenClusters := names{}
	for i := range c.Clusters {
		p := fmt.Sprintf("clusters[%d]", i)
		v.unique(seenClusters, p+".name", "cluster name", c.Clusters[i].Name)
		v.clusters[c.Clusters[i].Name] = true
		if i < len(v.validClusters) && v.validClusters[i] {
			continue
		}
		v.cluster(p, &c.Clusters[i])
	}
	v.filters = map[string]bool{}
	seenFilters := names{}
	for i := range c.Filters {
		p := fmt.Sprintf("filters[%d]", i)
		v.unique(seenFilters, p+".name", "filter name", c.Filters[i].Name)
		v.filters[c.Filters[i].Name] = true
		v.filter(p, &c.Filters[i])
	}
	for i := range c.WasmServices {
		p := fmt.Sprintf("wasm_services[%d]", i)
		// Plugin names key guest metrics and logs: unique across both lists.
		v.unique(seenFilters, p+".name", "filter or wasm service name", c.WasmServices[i].Name)
		v.filter(p, &c.WasmServices[i])
	}
	v.vmIDs(append(append([]Filter(nil), c.Filters...), c.WasmServices...))
	for i, st := range c.StatsTags {
		for _, pr := range CheckStatsTag(st) {
			v.errf(fmt.Sprintf("stats_tags[%d].%s", i, pr.Field), "%s", pr.Reason)
		}
	}

	if len(c.Listeners) == 0 {
		v.errf("listeners", "at least one listener is required")
	}
	seenListeners, seenAddrs := names{}, names{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		v.unique(seenListeners, p+".name", "listener name", l.Name)
		if _, port, err := net.SplitHostPort(l.Address); err == nil && port != "0" {
			v.unique(seenAddrs, p+".address", "listener address", l.Address)
		}
		v.listener(p, l)
	}
}

func (v *validator) tracing(p string, t *Tracing) {
	if t.SamplingPercent != nil {
		v.percent(p+".sampling_percent", *t.SamplingPercent)
	}
	if t.ForceHeader != "" && !validToken(t.ForceHeader) {
		v.errf(p+".force_header", "header name %q has characters a header name cannot have", t.ForceHeader)
	}
	v.nonNegative(p+".batch_size", t.BatchSize)
	v.nonNegative(p+".queue_size", t.QueueSize)
	v.duration(p+".flush_interval", t.FlushInterval)
	v.duration(p+".export_timeout", t.ExportTimeout)
	if t.BatchSize > 0 && t.QueueSize > 0 && t.BatchSize > t.QueueSize {
		v.errf(p+".batch_size", "batch_size %d is larger than queue_size %d; a batch could never fill", t.BatchSize, t.QueueSize)
	}
	if t.OTLPEndpoint == "" {
		if t.Enabled {
			v.errf(p+".otlp_endpoint", "otlp_endpoint is required when tracing is enabled (e.g. http://127.0.0.1:4318/v1/traces)")
		}
		return
	}
	u, err := url.Parse(t.OTLPEndpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(p+".otlp_endpoint", "%q is not an http:// or https:// URL (e.g. http://127.0.0.1:4318/v1/traces)", t.OTLPEndpoint)
	}
}

func (v *validator) filterRefs(path string, refs []string) {
	for i, f := range refs {
		fp := fmt.Sprintf("%s[%d]", path, i)
		if !v.required(fp, "filter name", f) {
			continue
		}
		if !v.filters[f] {
			v.errf(fp, "filter %q is not declared under filters (declared: %s)", f, declared(v.filters))
		}
	}
}

func (v *validator) clusterRef(path, name string) {
	if !v.required(path, "cluster", name) {
		return
	}
	if !v.clusters[name] {
		v.errf(path, "cluster %q is not declared under clusters (declared: %s)", name, declared(v.clusters))
	}
}

// declared lists the names in set for a "did you mean" hint.
func declared(set map[string]bool) string {
	var ns []string
	for n := range set {
		if n != "" {
			ns = append(ns, strconv.Quote(n))
		}
	}
	if len(ns) == 0 {
		return "none"
	}
	sort.Strings(ns)
	if len(ns) > 10 {
		ns = append(ns[:10], "...")
	}
	return strings.Join(ns, ", ")
}

func (v *validator) listener(p string, l *Listener) {
	v.required(p+".name", "name", l.Name)
	v.metadata(p+".metadata", l.Metadata)
	if v.required(p+".address", "address", l.Address) {
		v.address(p+".address", l.Address, true, false)
	}
	v.oneOf(p+".direction", l.Direction, "outbound", "inbound")
	v.nonNegative(p+".limits.max_header_bytes", l.Limits.MaxHeaderBytes)
	v.nonNegative(p+".limits.max_headers_count", l.Limits.MaxHeadersCount)
	v.nonNegative(p+".http2.max_concurrent_streams", l.HTTP2.MaxConcurrentStreams)
	v.nonNegative(p+".http2.max_header_list_size", l.HTTP2.MaxHeaderListSize)
	for _, w := range []struct {
		field string
		n     int
	}{{"initial_stream_window_size", l.HTTP2.InitialStreamWindowSize}, {"initial_connection_window_size", l.HTTP2.InitialConnectionWindowSize}} {
		if w.n != 0 && (w.n < 65535 || w.n > 1<<31-1) {
			v.errf(p+".http2."+w.field, "%d is outside HTTP/2's window range 65535 to 2147483647", w.n)
		}
	}
	v.duration(p+".http2.keepalive_interval", l.HTTP2.KeepaliveInterval)
	v.duration(p+".http2.keepalive_timeout", l.HTTP2.KeepaliveTimeout)
	v.oneOf(p+".http2.server", l.HTTP2.Server, H2ServerWeft, H2ServerXNet)
	v.nonNegative(p+".limits.max_body_bytes", l.Limits.MaxBodyBytes)
	v.nonNegative(p+".limits.max_connections", l.Limits.MaxConnections)
	v.duration(p+".limits.read_timeout", l.Limits.ReadTimeout)
	v.duration(p+".limits.write_timeout", l.Limits.WriteTimeout)
	v.duration(p+".limits.idle_timeout", l.Limits.IdleTimeout)
	v.filterRefs(p+".filters", l.Filters)
	v.accessLog(p+".access_log", &l.AccessLog)
	if v.listenerSecurity(p, l) {
		if l.GRPCWeb != nil {
			v.errf(p+".grpc_web", "gRPC-Web needs an http listener, not protocol tcp")
		}
		return // a tcp listener has no virtual hosts
	}
	v.grpcWeb(p+".grpc_web", l.GRPCWeb)

	if len(l.VirtualHosts) == 0 {
		v.errf(p+".virtual_hosts", "at least one virtual host is required")
	}
	seenVH, seenDomains := names{}, names{}
	for i := range l.VirtualHosts {
		vh := &l.VirtualHosts[i]
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", p, i)
		if v.required(vp+".name", "name", vh.Name) {
			v.unique(seenVH, vp+".name", "virtual host name", vh.Name)
		}
		if len(vh.Domains) == 0 {
			v.errf(vp+".domains", "at least one domain is required (\"*\" matches every host)")
		}
		for j, d := range vh.Domains {
			dp := fmt.Sprintf("%s.domains[%d]", vp, j)
			if v.domain(dp, d) {
				v.unique(seenDomains, dp, "domain", strings.ToLower(d))
			}
		}
		v.virtualHostRoutes(vp, vh)
	}
}

// grpcWeb checks a listener's gRPC-Web block and its CORS policy.
func (v *validator) grpcWeb(p string, g *GRPCWeb) {
	if g == nil || g.CORS == nil {
		return
	}
	c, cp := g.CORS, p+".cors"
	if len(c.AllowOrigins) == 0 {
		v.errf(cp+".allow_origins", "at least one origin is required (\"*\" allows any)")
	}
	for i, o := range c.AllowOrigins {
		op := fmt.Sprintf("%s.allow_origins[%d]", cp, i)
		switch {
		case o == "*":
			if c.AllowCredentials {
				v.errf(op, "\"*\" cannot be used with allow_credentials: browsers refuse it; list the origins")
			}
		case !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://"),
			strings.TrimRight(o[strings.Index(o, "://")+3:], "/") == "", strings.Count(o, "/") > 2:
			v.errf(op, "%q is not an origin: want scheme://host[:port], e.g. https://app.example.com, or \"*\"", o)
		}
	}
	for i, h := range c.AllowHeaders {
		v.headerName(fmt.Sprintf("%s.allow_headers[%d]", cp, i), h)
	}
	for i, h := range c.ExposeHeaders {
		v.headerName(fmt.Sprintf("%s.expose_headers[%d]", cp, i), h)
	}
	v.duration(cp+".max_age", c.MaxAge)
}

// domain checks one virtual host domain: "api.local", "api.local:8080",
// "*.local", "api.*" or "*".
func (v *validator) domain(p, d string) bool {
	if d == "" {
		v.errf(p, "domain is empty")
		return false
	}
	if strings.ContainsAny(d, " \t/?#@") {
		v.errf(p, "domain %q has characters a host cannot have", d)
		return false
	}
	if d == "*" {
		return true
	}
	stars := strings.Count(d, "*")
	switch {
	case stars == 0:
		return true
	case stars > 1, !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*"):
		v.errf(p, "domain %q: a wildcard is \"*\" alone, a leading \"*\" (\"*.example.com\") or a trailing \"*\" (\"api.*\")", d)
		return false
	case strings.Contains(d, ":"):
		v.errf(p, "domain %q: a port is only allowed in an exact domain", d)
		return false
	}
	return true
}

func (v *validator) accessLog(p string, a *AccessLog) {
	v.oneOf(p+".format", a.Format, "json", "console")
	seen := names{}
	for i, f := range a.Fields {
		fp := fmt.Sprintf("%s.fields[%d]", p, i)
		known := false
		for _, k := range accessLogFieldSet {
			known = known || f == k
		}
		if !known {
			v.errf(fp, "unknown access log field %q; known fields: %s", f, strings.Join(accessLogFieldSet, ", "))
			continue
		}
		v.unique(seen, fp, "access log field", f)
	}
}

func (v *validator) virtualHostRoutes(vp string, vh *VirtualHost) {
	if len(vh.Routes) == 0 {
		v.errf(vp+".routes", "at least one route is required")
	}
	seen := names{}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		rp := fmt.Sprintf("%s.routes[%d]", vp, i)
		v.unique(seen, rp+".name", "route name", r.Name)
		v.route(rp, r)
	}
}

func (v *validator) route(rp string, r *Route) {
	v.match(rp+".match", &r.Match)
	v.metadata(rp+".metadata", r.Metadata)

	actions := 0
	for _, set := range []bool{r.Route != nil, r.Redirect != nil, r.DirectResponse != nil} {
		if set {
			actions++
		}
	}
	if actions != 1 {
		v.errf(rp, "set exactly one of route, redirect, direct_response (found %d)", actions)
	}
	if r.Route != nil {
		v.routeAction(rp+".route", r.Route, &r.Match)
	}
	if r.Redirect != nil {
		v.redirect(rp+".redirect", r.Redirect)
	}
	if d := r.DirectResponse; d != nil {
		v.status(rp+".direct_response.status", d.Status)
	}
	v.headerMutation(rp+".request_headers", &r.RequestHeaders)
	v.headerMutation(rp+".response_headers", &r.ResponseHeaders)
	v.filterRefs(rp+".filters", r.Filters)
}

func (v *validator) match(mp string, m *Match) {
	n := 0
	for _, s := range []string{m.Prefix, m.Path, m.Regex} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		v.errf(mp, "set only one of prefix, path, regex (none means prefix \"/\")")
	}
	if g := m.GRPC; g != nil {
		switch {
		case g.Service == "" || strings.ContainsAny(g.Service, "/ \t"):
			v.errf(mp+".grpc.service", "service %q: want a fully qualified gRPC service name such as helloworld.Greeter", g.Service)
		case strings.ContainsAny(g.Method, "/ \t"):
			v.errf(mp+".grpc.method", "method %q: want a method name such as SayHello", g.Method)
		case (g.Method != "" && (m.Path != g.Path() || m.Prefix != "")) || (g.Method == "" && (m.Prefix != g.Path() || m.Path != "")) || m.Regex != "":
			v.errf(mp+".grpc", "grpc replaces prefix, path and regex: set only grpc")
		}
	}
	if m.Prefix != "" && !strings.HasPrefix(m.Prefix, "/") {
		v.errf(mp+".prefix", "prefix %q must start with \"/\"", m.Prefix)
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		v.errf(mp+".path", "path %q must start with \"/\"", m.Path)
	}
	if m.Regex != "" {
		v.regex(mp+".regex", m.Regex)
	}
	for i, meth := range m.Methods {
		p := fmt.Sprintf("%s.methods[%d]", mp, i)
		switch {
		case !validToken(meth):
			v.errf(p, "method %q is not an HTTP method name", meth)
		case strings.ToUpper(meth) != meth:
			v.errf(p, "method %q: methods are case-sensitive; write %q", meth, strings.ToUpper(meth))
		}
	}
	for i := range m.Headers {
		v.matcher(fmt.Sprintf("%s.headers[%d]", mp, i), &m.Headers[i], true)
	}
	for i := range m.Query {
		v.matcher(fmt.Sprintf("%s.query[%d]", mp, i), &m.Query[i], false)
	}
	for i := range m.Cookies {
		v.matcher(fmt.Sprintf("%s.cookies[%d]", mp, i), &m.Cookies[i], false)
	}
}

func (v *validator) matcher(p string, h *HeaderMatcher, header bool) {
	if header {
		v.headerName(p+".name", h.Name)
	} else {
		v.required(p+".name", "name", h.Name)
	}
	n := 0
	for _, set := range []bool{h.Exact != "", h.Prefix != "", h.Regex != "", h.Present, h.Absent} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.errf(p, "set exactly one of exact, prefix, regex, present, absent (found %d)", n)
	}
	if h.Regex != "" {
		v.regex(p+".regex", h.Regex)
	}
}

func (v *validator) routeAction(p string, a *RouteAction, m *Match) {
	switch {
	case a.Cluster != "" && len(a.WeightedClusters) > 0:
		v.errf(p, "set cluster or weighted_clusters, not both")
	case a.Cluster == "" && len(a.WeightedClusters) == 0:
		v.errf(p, "set cluster or weighted_clusters")
	case a.Cluster != "":
		v.clusterRef(p+".cluster", a.Cluster)
	default:
		sum, seen := 0, names{}
		for i, w := range a.WeightedClusters {
			wp := fmt.Sprintf("%s.weighted_clusters[%d]", p, i)
			v.clusterRef(wp+".cluster", w.Cluster)
			v.unique(seen, wp+".cluster", "cluster in split", w.Cluster)
			if w.Weight < 0 {
				v.errf(wp+".weight", "weight must not be negative, got %d (0 takes a version out of the split)", w.Weight)
			}
			sum += w.Weight
		}
		if sum != 100 {
			v.errf(p+".weighted_clusters", "weights add up to %d, want 100", sum)
		}
	}
	if mr := a.Mirror; mr != nil {
		v.clusterRef(p+".mirror.cluster", mr.Cluster)
		v.percent(p+".mirror.percent", mr.Percent)
	}
	if a.PrefixRewrite != "" {
		if !strings.HasPrefix(a.PrefixRewrite, "/") {
			v.errf(p+".prefix_rewrite", "prefix_rewrite %q must start with \"/\"", a.PrefixRewrite)
		}
		if m.Regex != "" {
			v.errf(p+".prefix_rewrite", "prefix_rewrite needs a prefix or path match, not regex")
		}
	}
	if a.PathRewrite != "" {
		if !strings.HasPrefix(a.PathRewrite, "/") || strings.ContainsAny(a.PathRewrite, "?#") {
			v.errf(p+".path_rewrite", "path_rewrite %q must start with \"/\" and hold no query", a.PathRewrite)
		}
		if a.PrefixRewrite != "" {
			v.errf(p+".path_rewrite", "set prefix_rewrite or path_rewrite, not both")
		}
	}
	if a.HostRewrite != "" && strings.ContainsAny(a.HostRewrite, " \t\r\n/?#@") {
		v.errf(p+".host_rewrite", "host_rewrite %q is not a host", a.HostRewrite)
	}
	v.duration(p+".timeout", a.Timeout)
	if rp := a.Retry; rp != nil {
		v.retry(p+".retry", rp, a.Timeout)
	}
}

func (v *validator) retry(p string, r *RetryPolicy, routeTimeout Duration) {
	v.nonNegative(p+".attempts", r.Attempts)
	wantCodes := false
	for i, on := range r.On {
		v.oneOf(fmt.Sprintf("%s.on[%d]", p, i), on, retryOnValues...)
		wantCodes = wantCodes || on == "retriable-status-codes"
	}
	for i, s := range r.RetriableStatusCodes {
		v.status(fmt.Sprintf("%s.retriable_status_codes[%d]", p, i), s)
	}
	switch {
	case wantCodes && len(r.RetriableStatusCodes) == 0:
		v.errf(p+".on", "on includes retriable-status-codes; list the codes in retriable_status_codes")
	case !wantCodes && len(r.RetriableStatusCodes) > 0:
		v.errf(p+".retriable_status_codes", "has no effect unless on includes retriable-status-codes")
	}
	v.duration(p+".per_try_timeout", r.PerTryTimeout)
	v.duration(p+".backoff_base", r.BackoffBase)
	v.duration(p+".backoff_max", r.BackoffMax)
	if r.PerTryTimeout > 0 && routeTimeout > 0 && r.PerTryTimeout > routeTimeout {
		v.errf(p+".per_try_timeout", "per_try_timeout %s is longer than the route timeout %s", r.PerTryTimeout.D(), routeTimeout.D())
	}
	if r.BackoffBase > 0 && r.BackoffMax > 0 && r.BackoffMax < r.BackoffBase {
		v.errf(p+".backoff_max", "backoff_max %s is shorter than backoff_base %s", r.BackoffMax.D(), r.BackoffBase.D())
	}
	v.percent(p+".budget_percent", r.BudgetPercent)
	v.nonNegative(p+".budget_min_concurrency", r.BudgetMinConcurrency)
}

func (v *validator) redirect(p string, r *Redirect) {
	v.oneOf(p+".scheme", r.Scheme, "http", "https")
	if r.Host != "" && strings.ContainsAny(r.Host, " \t\r\n/?#@") {
		v.errf(p+".host", "host %q is not a host", r.Host)
	}
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		v.errf(p+".path", "path %q must start with \"/\"", r.Path)
	}
	if r.Scheme == "" && r.Host == "" && r.Path == "" {
		v.errf(p, "a redirect must change at least one of scheme, host, path")
	}
	if r.StatusCode != 0 {
		ok := false
		for _, s := range redirectStatuses {
			ok = ok || r.StatusCode == s
		}
		if !ok {
			v.errf(p+".status_code", "status_code %d is not a redirect; want 301, 302, 303, 307 or 308", r.StatusCode)
		}
	}
}

func (v *validator) headerMutation(p string, m *HeaderMutation) {
	for _, list := range []struct {
		key     string
		headers []Header
	}{{"add", m.Add}, {"set", m.Set}} {
		for i, h := range list.headers {
			hp := fmt.Sprintf("%s.%s[%d]", p, list.key, i)
			v.headerName(hp+".name", h.Name)
			if strings.ContainsAny(h.Value, "\r\n\x00") {
				v.errf(hp+".value", "header value must not contain CR, LF or NUL")
			}
		}
	}
	for i, name := range m.Remove {
		v.headerName(fmt.Sprintf("%s.remove[%d]", p, i), name)
	}
}

func (v *validator) cluster(p string, c *Cluster) {
	v.required(p+".name", "name", c.Name)
	v.metadata(p+".metadata", c.Metadata)
	switch {
	case len(c.Endpoints) > 0 && c.DNS != nil:
		v.errf(p, "set endpoints or dns, not both")
	case len(c.Endpoints) == 0 && c.DNS == nil:
		v.errf(p+".endpoints", "at least one endpoint is required (or set dns)")
	}
	seen := names{}
	for i, e := range c.Endpoints {
		ep := fmt.Sprintf("%s.endpoints[%d]", p, i)
		if v.required(ep+".address", "address", e.Address) {
			v.address(ep+".address", e.Address, false, true)
			v.unique(seen, ep+".address", "endpoint address", e.Address)
		}
		if e.Weight < 0 {
			v.errf(ep+".weight", "weight must be at least 1, got %d", e.Weight)
		}
		v.metadata(ep+".metadata", e.Metadata)
	}
	if d := c.DNS; d != nil {
		v.required(p+".dns.name", "name", d.Name)
		if d.Port < 1 || d.Port > 65535 {
			v.errf(p+".dns.port", "port %d is not a number from 1 to 65535", d.Port)
		}
		v.duration(p+".dns.refresh", d.Refresh)
	}
	v.oneOf(p+".lb", c.LB, lbPolicies...)
	v.oneOf(p+".protocol", c.Protocol, clusterProtocols...)
	if c.LB == "ring_hash" {
		if c.HashOn == nil {
			v.errf(p+".hash_on", "lb ring_hash needs hash_on (one of header, cookie, source_ip)")
		}
	} else if c.HashOn != nil {
		v.errf(p+".hash_on", "hash_on only applies to lb ring_hash")
	}
	if h := c.HashOn; h != nil {
		n := 0
		for _, set := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.errf(p+".hash_on", "set exactly one of header, cookie, source_ip (found %d)", n)
		}
		if h.Header != "" && !validToken(h.Header) {
			v.errf(p+".hash_on.header", "header name %q has characters a header name cannot have", h.Header)
		}
	}
	v.duration(p+".connect_timeout", c.ConnectTimeout)
	v.nonNegative(p+".max_conns_per_endpoint", c.MaxConnsPerEndpoint)
	v.duration(p+".idle_timeout", c.IdleTimeout)
	if h := c.HealthCheck; h != nil {
		hp := p + ".health_check"
		if h.GRPC == nil && h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			v.errf(hp+".path", "path %q must start with \"/\"", h.Path)
		}
		v.duration(hp+".interval", h.Interval)
		v.duration(hp+".timeout", h.Timeout)
		if h.Interval > 0 && h.Timeout > h.Interval {
			v.errf(hp+".timeout", "timeout %s is longer than interval %s", h.Timeout.D(), h.Interval.D())
		}
		if h.HealthyThreshold < 0 {
			v.errf(hp+".healthy_threshold", "must be at least 1, got %d", h.HealthyThreshold)
		}
		if h.UnhealthyThreshold < 0 {
			v.errf(hp+".unhealthy_threshold", "must be at least 1, got %d", h.UnhealthyThreshold)
		}
		for i, s := range h.ExpectedStatuses {
			v.status(fmt.Sprintf("%s.expected_statuses[%d]", hp, i), s)
		}
		if g := h.GRPC; g != nil {
			// gRPC runs over HTTP/2 only, and its answer is a health
			// status, not a path's HTTP status.
			if c.Protocol != "http2" && c.Protocol != "auto" {
				v.errf(hp+".grpc", "a gRPC health check needs the cluster's protocol to be http2 or auto, not %q", c.Protocol)
			}
			if h.Path != "" {
				v.errf(hp+".path", "path does not apply to a gRPC health check (it calls /grpc.health.v1.Health/Check); remove it")
			}
			if len(h.ExpectedStatuses) > 0 {
				v.errf(hp+".expected_statuses", "expected_statuses does not apply to a gRPC health check (it passes on SERVING); remove it")
			}
		}
	}
	if o := c.OutlierDetection; o != nil {
		op := p + ".outlier_detection"
		v.nonNegative(op+".consecutive_5xx", o.Consecutive5xx)
		v.nonNegative(op+".consecutive_gateway_errors", o.ConsecutiveGatewayErrors)
		v.duration(op+".interval", o.Interval)
		v.duration(op+".base_ejection_time", o.BaseEjectionTime)
		v.duration(op+".max_ejection_time", o.MaxEjectionTime)
		if o.BaseEjectionTime > 0 && o.MaxEjectionTime > 0 && o.MaxEjectionTime < o.BaseEjectionTime {
			v.errf(op+".max_ejection_time", "max_ejection_time %s is shorter than base_ejection_time %s", o.MaxEjectionTime.D(), o.BaseEjectionTime.D())
		}
		v.percent(op+".max_ejection_percent", o.MaxEjectionPercent)
	}
	cb := c.CircuitBreakers
	v.nonNegative(p+".circuit_breakers.max_connections", cb.MaxConnections)
	v.nonNegative(p+".circuit_breakers.max_pending", cb.MaxPending)
	v.nonNegative(p+".circuit_breakers.max_requests", cb.MaxRequests)
	v.nonNegative(p+".circuit_breakers.max_retries", cb.MaxRetries)
	if t := c.PanicThreshold; t != -1 && (math.IsNaN(t) || t < 0 || t > 100) {
		v.errf(p+".panic_threshold", "must be between 0 and 100, or -1 to turn panic mode off; got %v", t)
	}
	v.clusterTLS(p+".tls", c.TLS)
}

// maxMemoryLimitMiB is what a 32-bit Wasm memory can address.
const maxMemoryLimitMiB = 4096

// metadata refuses what filters could not read as Envoy metadata: an empty
// namespace, a null, a map whose keys are not strings.
func (v *validator) metadata(p string, m *Metadata) {
	for _, pr := range CheckMetadata(m) {
		v.errf(p+"."+pr.Field, "%s", pr.Reason)
	}
}

// FieldProblem is one problem of a value checked on its own: Field is the
// path inside the value ("filter_metadata", "regex").
type FieldProblem struct{ Field, Reason string }

// CheckMetadata lists what filters could not read in m as Envoy metadata:
// an empty namespace, a null, a map whose keys are not strings. The control
// plane checks its resources' metadata with it.
func CheckMetadata(m *Metadata) []FieldProblem {
	if m == nil {
		return nil
	}
	var out []FieldProblem
	nss := make([]string, 0, len(m.FilterMetadata))
	for ns := range m.FilterMetadata {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	for _, ns := range nss {
		if ns == "" {
			out = append(out, FieldProblem{"filter_metadata", "a namespace is empty"})
		}
		vals := m.FilterMetadata[ns]
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if why := badMetadataValue(vals[k]); why != "" {
				out = append(out, FieldProblem{"filter_metadata", fmt.Sprintf("namespace %q: key %q: %s", ns, k, why)})
			}
		}
	}
	return out
}

// CheckStatsTag lists what is wrong with one stats_tags rule: a tag name
// that is not a Prometheus label name, a regex that does not compile or
// has no capture group.
func CheckStatsTag(st StatsTag) []FieldProblem {
	var out []FieldProblem
	if !promLabel.MatchString(st.TagName) {
		out = append(out, FieldProblem{"tag_name", fmt.Sprintf("tag_name %q is not a Prometheus label name (letters, digits, _; not starting with a digit or __)", st.TagName)})
	}
	if re, err := regexp.Compile(st.Regex); err != nil {
		out = append(out, FieldProblem{"regex", fmt.Sprintf("regex: %v", err)})
	} else if re.NumSubexp() < 1 {
		out = append(out, FieldProblem{"regex", fmt.Sprintf("regex %q needs a capture group: the part of the name to cut out", st.Regex)})
	}
	return out
}

// badMetadataValue says why val is not a metadata value ("" when it is one:
// a string, number, bool, list or string-keyed map of those).
func badMetadataValue(val any) string {
	switch x := val.(type) {
	case string, bool, int, int64, uint64, float64:
		return ""
	case nil:
		return "null is not a value; leave the key out"
	case []any:
		for _, e := range x {
			if why := badMetadataValue(e); why != "" {
				return why
			}
		}
		return ""
	case map[string]any:
		for _, e := range x {
			if why := badMetadataValue(e); why != "" {
				return why
			}
		}
		return ""
	}
	return fmt.Sprintf("a %T is not a value; use strings as map keys", val)
}

// promLabel is a Prometheus label name that is not reserved.
var promLabel = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$|^_[a-zA-Z0-9][a-zA-Z0-9_]*$`)

// vmIDs refuses filters that name the same vm_id with another module or
// vm_config: a vm_id stands for one vm_config, as in Envoy. Different VM
// limits (pool_size…) only mean separate VMs: a singleton wasm service and
// the filters of its vm_id differ in pool_size.
func (v *validator) vmIDs(fs []Filter) {
	first := map[string]int{}
	for i := range fs {
		f := &fs[i]
		if f.VMID == "" || f.IsolateVM {
			continue
		}
		j, ok := first[f.VMID]
		if !ok {
			first[f.VMID] = i
			continue
		}
		if diff := vmDifference(&fs[j], f); diff != "" {
			v.errf(fmt.Sprintf("filters[%d].vm_id", i), "filters %q and %q share vm_id %q but differ in %s: give them the same module and vm_config, another vm_id, or isolate_vm: true",
				fs[j].Name, f.Name, f.VMID, diff)
		}
	}
}

// vmDifference names the first VM setting a and b disagree on ("" when none).
func vmDifference(a, b *Filter) string {
	switch {
	case a.Module != b.Module:
		return "module"
	case string(a.VMConfig) != string(b.VMConfig):
		return "vm_config"
	}
	return ""
}

// GuestLogLevels are the values of a filter's log_level, Proxy-Wasm's log
// levels from the lowest (0) to the highest (5).
var GuestLogLevels = []string{"trace", "debug", "info", "warn", "error", "critical"}

func (v *validator) filter(p string, f *Filter) {
	v.required(p+".name", "name", f.Name)
	m := f.Module
	mp := p + ".module"
	set := 0
	for _, s := range []string{m.Path, m.URL, m.OCI} {
		if s != "" {
			set++
		}
	}
	switch {
	case set > 1:
		v.errf(mp, "set one of path, url and oci, not several")
	case set == 0:
		v.errf(mp, "set path (a .wasm file, relative to the config file), url or oci (an image reference)")
	case m.OCI != "":
		if _, _, err := oci.ParseRef(m.OCI); err != nil {
			v.errf(mp+".oci", "%q is not an image reference: %v", m.OCI, err)
		}
	case m.URL != "":
		u, err := url.Parse(m.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errf(mp+".url", "url %q is not an http(s) URL", m.URL)
		}
		if m.SHA256 == "" {
			v.errf(mp+".url", "a module fetched by url needs sha256 (the hex digest of the .wasm file)")
		}
	}
	if m.OCI == "" {
		for _, f := range [][2]string{{"pull_policy", m.PullPolicy}, {"pull_secret", m.PullSecret}, {"ca_file", m.CAFile}} {
			if f[1] != "" {
				v.errf(mp+"."+f[0], "applies only to a module pulled by oci")
			}
		}
		if m.Verify != nil {
			v.errf(mp+".verify", "signatures are checked only on a module pulled by oci")
		}
	}
	v.oneOf(mp+".pull_policy", m.PullPolicy, oci.IfNotPresent, oci.Always)
	if m.Verify != nil && len(m.Verify.Keys) == 0 {
		v.errf(mp+".verify.keys", "list at least one public key file (PEM)")
	}
	if m.SHA256 != "" {
		if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != 32 {
			v.errf(mp+".sha256", "sha256 must be 64 hex digits, got %q", m.SHA256)
		}
	}
	v.oneOf(p+".failure_policy", f.FailurePolicy, "fail_closed", "fail_open")
	v.oneOf(p+".log_level", f.LogLevel, GuestLogLevels...)
	v.nonNegative(p+".pool_size", f.PoolSize)
	if f.MemoryLimitMiB < 0 || f.MemoryLimitMiB > maxMemoryLimitMiB {
		v.errf(p+".memory_limit_mib", "must be between 1 and %d (MiB), got %d", maxMemoryLimitMiB, f.MemoryLimitMiB)
	}
	v.duration(p+".callback_timeout", f.CallbackTimeout)
	v.nonNegative(p+".max_body_bytes", f.MaxBodyBytes)
}
