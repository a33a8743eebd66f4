package gatewayapi

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

// ControllerName is the controllerName weft writes in a route's
// status.parents entries.
const ControllerName gwv1.GatewayController = "weftmesh.io/control"

// FilterGroup and FilterKind are what an ExtensionRef filter names to run
// a weft Filter resource (a Wasm filter) on a route's requests.
const (
	FilterGroup = "weftmesh.io"
	FilterKind  = "Filter"
)

// NoTimeout is the route timeout a Gateway API timeout of "0s" (no
// timeout) becomes: weft routes always have a deadline.
const NoTimeout = 24 * time.Hour

// Kinds of route.
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
)

// Service is what the translator needs of a Kubernetes Service: its TCP
// ports, the first one first.
type Service struct {
	Ports []ServicePort
}

// ServicePort is one port of a Service and the mesh Service it is (each
// port of a Kubernetes Service is a mesh Service of its own, see
// kube.Discovery).
type ServicePort struct {
	Name string
	Port int32
	// Mesh is the port's mesh Service name; "" while the port has no
	// ready endpoint (and so no mesh Service).
	Mesh string
}

// Input is everything the routes are read against.
type Input struct {
	HTTPRoutes []*gwv1.HTTPRoute
	GRPCRoutes []*gwv1.GRPCRoute
	Grants     []*gwv1beta1.ReferenceGrant
	// Service looks up a Kubernetes Service; ok is false when there is none.
	Service func(namespace, name string) (Service, bool)
	// Filter reports whether a weft Filter resource exists (for
	// ExtensionRef filters); nil: none exists.
	Filter func(namespace, name string) bool
}

// RouteRef names a route.
type RouteRef struct {
	Kind      string // KindHTTPRoute or KindGRPCRoute
	Namespace string
	Name      string
}

func (r RouteRef) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// RouteStatus is weft's part of one route's status: an entry per parentRef
// that names a Service, at the route's generation. Conditions have no
// LastTransitionTime; the writer keeps the stored one when a condition's
// status did not change.
type RouteStatus struct {
	Route      RouteRef
	Generation int64
	Parents    []gwv1.RouteParentStatus
	// Services are the mesh Services' rules (TrafficRule keys) that carry
	// this route's matches.
	Services []mesh.Key
}

// Result is the translation of every route.
type Result struct {
	// Rules are TrafficRule resources, one per mesh Service with an
	// accepted route, named and namespaced as the mesh Service, in key
	// order; File names the routes they come from.
	Rules []*mesh.Resource
	// Statuses are in route order (kind, namespace, name).
	Statuses []RouteStatus
}

// Translate reads every route against the input.
func Translate(in Input) Result {
	t := &translator{in: in, byService: map[mesh.Key][]ruleRoute{}}
	var routes []*route
	for _, r := range in.HTTPRoutes {
		routes = append(routes, fromHTTP(r))
	}
	for _, r := range in.GRPCRoutes {
		routes = append(routes, fromGRPC(r))
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].ref.less(routes[j].ref) })
	var res Result
	for _, r := range routes {
		res.Statuses = append(res.Statuses, t.route(r))
	}
	keys := make([]mesh.Key, 0, len(t.byService))
	for k := range t.byService {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	for _, k := range keys {
		r := buildRule(k, t.byService[k])
		seen := map[RouteRef]bool{}
		var from []string
		for _, x := range t.byService[k] {
			if !seen[x.ref] {
				seen[x.ref] = true
				from = append(from, x.ref.String())
			}
		}
		sort.Strings(from)
		r.File = strings.Join(from, ", ")
		res.Rules = append(res.Rules, r)
	}
	return res
}

func (r RouteRef) less(o RouteRef) bool {
	if r.Kind != o.Kind {
		return r.Kind > o.Kind // HTTPRoute before GRPCRoute
	}
	if r.Namespace != o.Namespace {
		return r.Namespace < o.Namespace
	}
	return r.Name < o.Name
}

// route is an HTTPRoute or a GRPCRoute in one shape.
type route struct {
	ref        RouteRef
	generation int64
	created    metav1.Time
	parents    []gwv1.ParentReference
	rules      []rule
}

type rule struct {
	name     string
	matches  []match
	filters  []gwv1.HTTPRouteFilter
	backends []gwv1.HTTPBackendRef
	timeouts *gwv1.HTTPRouteTimeouts
	retry    *gwv1.HTTPRouteRetry
	sessions bool // sessionPersistence is set
}

// match is one Gateway API match as weft matches, in precedence order, and
// its precedence.
type match struct {
	weft []mesh.Match
	prec precedence
	// exactPath is set for an Exact path match (rewrites replace the whole
	// path); prefix for a PathPrefix match (the value, no trailing "/").
	exactPath bool
	prefix    string
	isPrefix  bool
}

// precedence orders matches across every route of a Service, as the
// Gateway API says: exact path, then longest prefix (then regular
// expressions, whose order is implementation-specific: weft puts them
// last), then a method match, more header matches, more query matches;
// then the oldest route, then namespace/name, then rule and match order.
type precedence struct {
	pathRank int // 0 exact, 1 prefix, 2 regex
	pathLen  int
	method   bool
	headers  int
	query    int
}

func (p precedence) less(o precedence) bool {
	if p.pathRank != o.pathRank {
		return p.pathRank < o.pathRank
	}
	if p.pathLen != o.pathLen {
		return p.pathLen > o.pathLen
	}
	if p.method != o.method {
		return p.method
	}
	if p.headers != o.headers {
		return p.headers > o.headers
	}
	return p.query > o.query
}

// ruleRoute is one weft route from a route's rule, with its ordering.
type ruleRoute struct {
	rr      mesh.RuleRoute
	prec    precedence
	created metav1.Time
	ref     RouteRef
	rule    int
	match   int
	part    int
}

func (a ruleRoute) less(b ruleRoute) bool {
	if a.prec != b.prec {
		return a.prec.less(b.prec)
	}
	if !a.created.Equal(&b.created) {
		return a.created.Before(&b.created)
	}
	if a.ref != b.ref {
		if a.ref.Namespace+"/"+a.ref.Name != b.ref.Namespace+"/"+b.ref.Name {
			return a.ref.Namespace+"/"+a.ref.Name < b.ref.Namespace+"/"+b.ref.Name
		}
		return a.ref.less(b.ref)
	}
	if a.rule != b.rule {
		return a.rule < b.rule
	}
	if a.match != b.match {
		return a.match < b.match
	}
	return a.part < b.part
}

type translator struct {
	in        Input
	byService map[mesh.Key][]ruleRoute
}

// problem is why a route, a rule or a reference is not used.
type problem struct {
	reason  gwv1.RouteConditionReason
	message string
}

func (p *problem) Error() string { return p.message }

func problemf(reason gwv1.RouteConditionReason, format string, args ...any) *problem {
	return &problem{reason: reason, message: fmt.Sprintf(format, args...)}
}

// route translates one route's rules once and attaches them to every
// Service parent that accepts it.
func (t *translator) route(r *route) RouteStatus {
	st := RouteStatus{Route: r.ref, Generation: r.generation}
	var rrs []ruleRoute
	var dropped []string
	var refProblem *problem
	var ruleProblem *problem
	for i, ru := range r.rules {
		out, refp, err := t.rule(r, i, ru)
		if err != nil {
			if ruleProblem == nil {
				ruleProblem = err
			}
			dropped = append(dropped, fmt.Sprintf("%s: %s", ruleLabel(i, ru), err.message))
			continue
		}
		if refp != nil && refProblem == nil {
			refProblem = refp
		}
		rrs = append(rrs, out...)
	}
	for _, pr := range r.parents {
		if !isService(pr) {
			continue // a Gateway's, or another controller's
		}
		ps := gwv1.RouteParentStatus{ParentRef: pr, ControllerName: ControllerName}
		ports, p := t.parent(r, pr)
		okMsg := "weft routes the Service's requests by this route"
		if p == nil && len(ports) == 0 {
			okMsg = "the Service has no ready endpoint yet: weft routes its requests by this route once it has"
		}
		accepted := condition(gwv1.RouteConditionAccepted, r.generation, nil, gwv1.RouteReasonAccepted, okMsg)
		if p != nil {
			accepted = condition(gwv1.RouteConditionAccepted, r.generation, p, "", "")
		} else if len(rrs) == 0 && ruleProblem != nil {
			accepted = condition(gwv1.RouteConditionAccepted, r.generation, problemf(ruleProblem.reason, "no rule is usable: %s", strings.Join(dropped, "; ")), "", "")
		}
		resolved := condition(gwv1.RouteConditionResolvedRefs, r.generation, refProblem, gwv1.RouteReasonResolvedRefs, "every reference resolved")
		ps.Conditions = []metav1.Condition{accepted, resolved}
		if accepted.Status == metav1.ConditionTrue && len(dropped) > 0 {
			ps.Conditions = append(ps.Conditions, metav1.Condition{
				Type: string(gwv1.RouteConditionPartiallyInvalid), Status: metav1.ConditionTrue, ObservedGeneration: r.generation,
				Reason: string(ruleProblem.reason), Message: "Dropped Rule(s): " + strings.Join(dropped, "; "),
			})
		}
		st.Parents = append(st.Parents, ps)
		if accepted.Status == metav1.ConditionTrue {
			for _, k := range ports {
				t.byService[k] = append(t.byService[k], rrs...)
				st.Services = append(st.Services, k)
			}
		}
	}
	return st
}

func ruleLabel(i int, ru rule) string {
	if ru.name != "" {
		return fmt.Sprintf("rule %d (%s)", i, ru.name)
	}
	return fmt.Sprintf("rule %d", i)
}

func condition(typ gwv1.RouteConditionType, gen int64, p *problem, okReason gwv1.RouteConditionReason, okMessage string) metav1.Condition {
	c := metav1.Condition{Type: string(typ), ObservedGeneration: gen, Status: metav1.ConditionTrue, Reason: string(okReason), Message: okMessage}
	if p != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, string(p.reason), p.message
	}
	return c
}

func isService(pr gwv1.ParentReference) bool {
	return pr.Group != nil && *pr.Group == "" && pr.Kind != nil && *pr.Kind == "Service"
}

// parent returns the rules (of the mesh Services of the parent's ports)
// a Service parentRef attaches the route to: the port it names (by number,
// or by name as sectionName), else every port; or why it does not take
// the route. A port with no ready endpoint has no mesh Service yet.
func (t *translator) parent(r *route, pr gwv1.ParentReference) ([]mesh.Key, *problem) {
	ns, name := r.ref.Namespace, string(pr.Name)
	if pr.Namespace != nil && *pr.Namespace != "" {
		ns = string(*pr.Namespace)
	}
	if ns != r.ref.Namespace {
		return nil, problemf(gwv1.RouteReasonUnsupportedValue, "consumer routes (a parentRef to Service %s/%s in another namespace than the route's) are not supported by weft; create the route in namespace %s", ns, name, ns)
	}
	svc, ok := t.lookup(ns, name)
	if !ok {
		return nil, problemf(gwv1.RouteReasonNoMatchingParent, "Service %s/%s does not exist", ns, name)
	}
	var keys []mesh.Key
	found := false
	for _, p := range svc.Ports {
		if (pr.Port == nil || *pr.Port == p.Port) && (pr.SectionName == nil || string(*pr.SectionName) == p.Name) {
			found = true
			if p.Mesh != "" {
				keys = append(keys, mesh.Key{Kind: mesh.KindTrafficRule, Namespace: ns, Name: p.Mesh})
			}
		}
	}
	if found {
		return keys, nil
	}
	if pr.Port == nil && pr.SectionName == nil {
		return nil, problemf(gwv1.RouteReasonNoMatchingParent, "Service %s/%s has no TCP port", ns, name)
	}
	what := []string{}
	if pr.Port != nil {
		what = append(what, fmt.Sprintf("port %d", *pr.Port))
	}
	if pr.SectionName != nil {
		what = append(what, fmt.Sprintf("port name %q", *pr.SectionName))
	}
	return nil, problemf(gwv1.RouteReasonNoMatchingParent, "Service %s/%s has no %s", ns, name, strings.Join(what, " and "))
}

func (t *translator) lookup(ns, name string) (Service, bool) {
	if t.in.Service == nil {
		return Service{}, false
	}
	return t.in.Service(ns, name)
}

// rule translates one rule: a weft route per match (two for a path
// prefix), sharing one action. A *problem in the third result drops the
// rule; the second reports references that did not resolve, which leave the
// rule in use without them.
func (t *translator) rule(r *route, i int, ru rule) ([]ruleRoute, *problem, *problem) {
	var a mesh.RuleRoute
	seen := map[gwv1.HTTPRouteFilterType]bool{}
	var refp *problem
	var redirect *gwv1.HTTPRequestRedirectFilter
	var rewrite *gwv1.HTTPURLRewriteFilter
	if ru.sessions {
		return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "sessionPersistence is not supported by weft")
	}
	for j, f := range ru.filters {
		if seen[f.Type] && f.Type != gwv1.HTTPRouteFilterExtensionRef {
			return nil, nil, problemf(gwv1.RouteReasonIncompatibleFilters, "filters[%d]: a second %s filter; weft applies one of each type per rule", j, f.Type)
		}
		seen[f.Type] = true
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			if f.RequestHeaderModifier == nil {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: requestHeaderModifier is missing", j)
			}
			a.RequestHeaders = mutation(f.RequestHeaderModifier)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			if f.ResponseHeaderModifier == nil {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: responseHeaderModifier is missing", j)
			}
			a.ResponseHeaders = mutation(f.ResponseHeaderModifier)
		case gwv1.HTTPRouteFilterRequestRedirect:
			if f.RequestRedirect == nil {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: requestRedirect is missing", j)
			}
			redirect = f.RequestRedirect
		case gwv1.HTTPRouteFilterURLRewrite:
			if f.URLRewrite == nil {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: urlRewrite is missing", j)
			}
			rewrite = f.URLRewrite
		case gwv1.HTTPRouteFilterRequestMirror:
			m := f.RequestMirror
			if m == nil {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: requestMirror is missing", j)
			}
			svc, p := t.backend(r, m.BackendRef, fmt.Sprintf("filters[%d].requestMirror.backendRef", j))
			if p != nil && refp == nil {
				refp = p
			}
			if svc == "" {
				continue // nothing to mirror to now
			}
			pct := 100.0
			switch {
			case m.Percent != nil:
				pct = float64(*m.Percent)
			case m.Fraction != nil:
				den := int32(100)
				if m.Fraction.Denominator != nil {
					den = *m.Fraction.Denominator
				}
				if den <= 0 || m.Fraction.Numerator > den {
					return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: requestMirror.fraction %d/%d is not a fraction from 0 to 1", j, m.Fraction.Numerator, den)
				}
				pct = 100 * float64(m.Fraction.Numerator) / float64(den)
			}
			if pct == 0 {
				continue // mirrors nothing
			}
			a.Mirror = &mesh.MirrorSpec{Service: svc, Percent: pct}
		case gwv1.HTTPRouteFilterExtensionRef:
			e := f.ExtensionRef
			if e == nil {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: extensionRef is missing", j)
			}
			if e.Group != FilterGroup || e.Kind != FilterKind {
				return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: extensionRef %s/%s: weft runs only %s %s resources (Wasm filters)", j, e.Group, e.Kind, FilterGroup, FilterKind)
			}
			if t.in.Filter == nil || !t.in.Filter(r.ref.Namespace, string(e.Name)) {
				// The filter must not be skipped: its requests fail instead.
				if refp == nil {
					refp = problemf(gwv1.RouteReasonBackendNotFound, "filters[%d]: extensionRef: no Filter %s/%s", j, r.ref.Namespace, e.Name)
				}
				a.DirectResponse = &config.DirectResponse{Status: 500, Body: "weft: a filter of this route does not exist\n"}
				continue
			}
			a.Filters = append(a.Filters, string(e.Name))
		default:
			return nil, nil, problemf(gwv1.RouteReasonUnsupportedValue, "filters[%d]: the %s filter is not supported by weft", j, f.Type)
		}
	}
	if redirect != nil && rewrite != nil {
		return nil, nil, problemf(gwv1.RouteReasonIncompatibleFilters, "RequestRedirect and URLRewrite cannot be used together")
	}
	if redirect != nil && len(ru.backends) > 0 {
		return nil, nil, problemf(gwv1.RouteReasonIncompatibleFilters, "a rule with a RequestRedirect filter cannot have backendRefs")
	}
	if err := t.timeouts(&a, ru); err != nil {
		return nil, nil, err
	}
	if a.DirectResponse == nil && redirect == nil {
		p, err := t.backends(r, &a, ru.backends)
		if err != nil {
			return nil, nil, err
		}
		if p != nil && refp == nil {
			refp = p
		}
	}
	if a.DirectResponse != nil || redirect != nil {
		a.Split, a.Mirror, a.Retry, a.Timeout = nil, nil, nil, 0
	}
	var out []ruleRoute
	for mi, m := range ru.matches {
		for part, wm := range m.weft {
			rr := a
			rr.Match = wm
			if redirect != nil && rr.DirectResponse == nil {
				rd, err := toRedirect(redirect, m, part)
				if err != nil {
					return nil, nil, err
				}
				rr.Redirect = rd
			}
			if rewrite != nil {
				rw, err := toRewrite(rewrite, m, part)
				if err != nil {
					return nil, nil, err
				}
				rr.Rewrite = rw
			}
			rr.Name = routeName(r.ref, i, mi, part, len(m.weft))
			out = append(out, ruleRoute{rr: rr, prec: m.prec, created: r.created, ref: r.ref, rule: i, match: mi, part: part})
		}
	}
	return out, refp, nil
}

func mutation(h *gwv1.HTTPHeaderFilter) config.HeaderMutation {
	var m config.HeaderMutation
	for _, x := range h.Set {
		m.Set = append(m.Set, config.Header{Name: string(x.Name), Value: x.Value})
	}
	for _, x := range h.Add {
		m.Add = append(m.Add, config.Header{Name: string(x.Name), Value: x.Value})
	}
	m.Remove = append(m.Remove, h.Remove...)
	return m
}

func (t *translator) timeouts(a *mesh.RuleRoute, ru rule) *problem {
	var req, backend time.Duration
	parse := func(field string, d *gwv1.Duration) (time.Duration, *problem) {
		v, err := time.ParseDuration(string(*d))
		if err != nil || v < 0 {
			return 0, problemf(gwv1.RouteReasonUnsupportedValue, "%s %q is not a duration", field, *d)
		}
		return v, nil
	}
	if to := ru.timeouts; to != nil {
		var p *problem
		if to.Request != nil {
			if req, p = parse("timeouts.request", to.Request); p != nil {
				return p
			}
			if req == 0 {
				req = NoTimeout
			}
			a.Timeout = config.Duration(req)
		}
		if to.BackendRequest != nil {
			if backend, p = parse("timeouts.backendRequest", to.BackendRequest); p != nil {
				return p
			}
			if req > 0 && backend > req {
				return problemf(gwv1.RouteReasonUnsupportedValue, "timeouts.backendRequest %s is longer than timeouts.request %s", backend, req)
			}
		}
	}
	rt := ru.retry
	if rt == nil && backend == 0 {
		return nil
	}
	rp := &config.RetryPolicy{On: append([]string(nil), config.DefaultRetryOn...), PerTryTimeout: config.Duration(backend)}
	if rt != nil {
		if rt.Attempts != nil {
			if *rt.Attempts == 0 {
				rp.Disabled = true
			}
			rp.Attempts = *rt.Attempts
		}
		for _, c := range rt.Codes {
			rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, int(c))
		}
		if len(rp.RetriableStatusCodes) > 0 {
			rp.On = append(rp.On, "retriable-status-codes")
		}
		if rt.Backoff != nil {
			b, p := parse("retry.backoff", rt.Backoff)
			if p != nil {
				return p
			}
			rp.BackoffBase = config.Duration(b)
		}
	}
	a.Retry = rp
	return nil
}

// backend resolves a backendRef (or a mirror's) to the mesh Service of the
// Service port it names, as "NAMESPACE/NAME"; "" with no problem when the
// port has no ready endpoint (no mesh Service) now.
func (t *translator) backend(r *route, b gwv1.BackendObjectReference, field string) (string, *problem) {
	group, kind := "", "Service"
	if b.Group != nil {
		group = string(*b.Group)
	}
	if b.Kind != nil {
		kind = string(*b.Kind)
	}
	if group != "" || kind != "Service" {
		return "", problemf(gwv1.RouteReasonInvalidKind, "%s: %s: weft routes only to core Services", field, strings.TrimSpace(group+" "+kind))
	}
	ns := r.ref.Namespace
	if b.Namespace != nil && *b.Namespace != "" {
		ns = string(*b.Namespace)
	}
	if ns != r.ref.Namespace && !t.granted(r.ref, ns, string(b.Name)) {
		return "", problemf(gwv1.RouteReasonRefNotPermitted, "%s: Service %s/%s is in another namespace and no ReferenceGrant there allows %ss from namespace %s", field, ns, b.Name, r.ref.Kind, r.ref.Namespace)
	}
	svc, ok := t.lookup(ns, string(b.Name))
	if !ok {
		return "", problemf(gwv1.RouteReasonBackendNotFound, "%s: Service %s/%s does not exist", field, ns, b.Name)
	}
	for i, p := range svc.Ports {
		if (b.Port == nil && i == 0) || (b.Port != nil && p.Port == *b.Port) {
			if p.Mesh == "" {
				return "", nil
			}
			return ns + "/" + p.Mesh, nil
		}
	}
	if b.Port == nil {
		return "", problemf(gwv1.RouteReasonBackendNotFound, "%s: Service %s/%s has no TCP port", field, ns, b.Name)
	}
	return "", problemf(gwv1.RouteReasonBackendNotFound, "%s: Service %s/%s has no TCP port %d", field, ns, b.Name, *b.Port)
}

func (t *translator) granted(from RouteRef, ns, name string) bool {
	for _, g := range t.in.Grants {
		if g.Namespace != ns {
			continue
		}
		fromOK := false
		for _, f := range g.Spec.From {
			fromOK = fromOK || (f.Group == gwv1.GroupName && string(f.Kind) == from.Kind && string(f.Namespace) == from.Namespace)
		}
		if !fromOK {
			continue
		}
		for _, to := range g.Spec.To {
			if to.Group == "" && to.Kind == "Service" && (to.Name == nil || string(*to.Name) == name) {
				return true
			}
		}
	}
	return false
}

// backends turns the weighted backendRefs into the route's split. Invalid
// backends are left out (their share goes to the valid ones) and reported,
// and so are backends with no ready endpoint; with no backend left,
// requests get a 503 when some had no ready endpoint, else a 500.
func (t *translator) backends(r *route, a *mesh.RuleRoute, refs []gwv1.HTTPBackendRef) (*problem, *problem) {
	var refp *problem
	type share struct {
		svc string
		w   int64
	}
	var shares []share
	total := int64(0)
	unavailable := false
	for j, b := range refs {
		if len(b.Filters) > 0 {
			return nil, problemf(gwv1.RouteReasonUnsupportedValue, "backendRefs[%d].filters: filters on one backend are not supported by weft; put them on the rule", j)
		}
		svc, p := t.backend(r, b.BackendObjectReference, fmt.Sprintf("backendRefs[%d]", j))
		if p != nil {
			if refp == nil {
				refp = p
			}
			continue
		}
		w := int64(1)
		if b.Weight != nil {
			w = int64(*b.Weight)
		}
		if w <= 0 {
			continue
		}
		if svc == "" {
			unavailable = true
			continue
		}
		for k := range shares {
			if shares[k].svc == svc {
				shares[k].w += w
				svc = ""
			}
		}
		if svc != "" {
			shares = append(shares, share{svc, w})
		}
		total += w
	}
	if total == 0 {
		a.DirectResponse = &config.DirectResponse{Status: 500, Body: "weft: this route has no usable backend\n"}
		if unavailable {
			a.DirectResponse = &config.DirectResponse{Status: 503, Body: "weft: no backend of this route has a ready endpoint\n"}
		}
		return refp, nil
	}
	// Whole percents adding up to 100, by largest remainder.
	left := 100
	rem := make([]int64, len(shares))
	for _, s := range shares {
		pct := int(s.w * 100 / total)
		a.Split = append(a.Split, mesh.Split{Service: s.svc, Weight: pct})
		left -= pct
	}
	for i, s := range shares {
		rem[i] = s.w * 100 % total
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		a.Split[best].Weight++
		rem[best] = -1
	}
	return refp, nil
}

// toRedirect builds the redirect of one weft route of a match.
func toRedirect(f *gwv1.HTTPRequestRedirectFilter, m match, part int) (*config.Redirect, *problem) {
	rd := &config.Redirect{StatusCode: 302}
	if f.StatusCode != nil {
		rd.StatusCode = *f.StatusCode
	}
	if f.Scheme != nil {
		rd.Scheme = *f.Scheme
	}
	if f.Hostname != nil {
		rd.Host = string(*f.Hostname)
	}
	if f.Port != nil {
		if rd.Host == "" {
			return nil, problemf(gwv1.RouteReasonUnsupportedValue, "requestRedirect.port without hostname is not supported by weft; set hostname too")
		}
		rd.Host = fmt.Sprintf("%s:%d", rd.Host, *f.Port)
	}
	if p := f.Path; p != nil {
		switch p.Type {
		case gwv1.FullPathHTTPPathModifier:
			if p.ReplaceFullPath == nil {
				return nil, problemf(gwv1.RouteReasonUnsupportedValue, "requestRedirect.path.replaceFullPath is missing")
			}
			rd.Path = *p.ReplaceFullPath
		case gwv1.PrefixMatchHTTPPathModifier:
			if p.ReplacePrefixMatch == nil {
				return nil, problemf(gwv1.RouteReasonUnsupportedValue, "requestRedirect.path.replacePrefixMatch is missing")
			}
			if !m.exactPath {
				return nil, problemf(gwv1.RouteReasonUnsupportedValue, "requestRedirect.path.replacePrefixMatch is supported by weft only with an Exact path match; use replaceFullPath")
			}
			rd.Path = *p.ReplacePrefixMatch
		default:
			return nil, problemf(gwv1.RouteReasonUnsupportedValue, "requestRedirect.path.type %q is not supported", p.Type)
		}
		if rd.Path == "" {
			rd.Path = "/"
		}
	}
	if rd.Scheme == "" && rd.Host == "" && rd.Path == "" {
		return nil, problemf(gwv1.RouteReasonUnsupportedValue, "a requestRedirect that changes nothing (only the status code) is not supported by weft")
	}
	return rd, nil
}

// toRewrite builds the rewrite of one weft route of a match. A PathPrefix
// match "/p" is two weft routes: part 0 the path "/p" exactly (the whole
// path is replaced), part 1 the prefix "/p/" (replaced by the new prefix
// with one "/").
func toRewrite(f *gwv1.HTTPURLRewriteFilter, m match, part int) (*mesh.Rewrite, *problem) {
	rw := &mesh.Rewrite{}
	if f.Hostname != nil {
		rw.Host = string(*f.Hostname)
	}
	if p := f.Path; p != nil {
		var v string
		switch p.Type {
		case gwv1.FullPathHTTPPathModifier:
			if p.ReplaceFullPath == nil {
				return nil, problemf(gwv1.RouteReasonUnsupportedValue, "urlRewrite.path.replaceFullPath is missing")
			}
			rw.Path = *p.ReplaceFullPath
			if rw.Path == "" {
				rw.Path = "/"
			}
		case gwv1.PrefixMatchHTTPPathModifier:
			if p.ReplacePrefixMatch == nil {
				return nil, problemf(gwv1.RouteReasonUnsupportedValue, "urlRewrite.path.replacePrefixMatch is missing")
			}
			if !m.isPrefix && !m.exactPath {
				return nil, problemf(gwv1.RouteReasonUnsupportedValue, "urlRewrite.path.replacePrefixMatch needs a PathPrefix path match")
			}
			v = *p.ReplacePrefixMatch
			if m.isPrefix && m.prefix != "" && part == 1 {
				v = strings.TrimSuffix(v, "/") + "/"
			}
			if m.isPrefix && m.prefix == "" {
				// The prefix "/" itself: the new prefix goes before the path.
				v = strings.TrimSuffix(v, "/") + "/"
			}
			if v == "" {
				v = "/"
			}
		default:
			return nil, problemf(gwv1.RouteReasonUnsupportedValue, "urlRewrite.path.type %q is not supported", p.Type)
		}
		rw.Prefix = v
	}
	if rw.Host == "" && rw.Prefix == "" && rw.Path == "" {
		return nil, nil
	}
	return rw, nil
}

// routeName names one weft route after its route, rule, match and part:
// a label (at most 63 characters), unique within the Service's rule.
func routeName(ref RouteRef, rule, match, part, parts int) string {
	kind := "http"
	if ref.Kind == KindGRPCRoute {
		kind = "grpc"
	}
	name := fmt.Sprintf("%s-%s-%d-%d", kind, ref.Name, rule, match)
	if parts > 1 {
		name += fmt.Sprintf("-%d", part)
	}
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	name = strings.Trim(string(b), "-")
	if len(name) > 63 {
		h := fnv.New32a()
		h.Write([]byte(ref.String() + name))
		name = fmt.Sprintf("%s-%08x", strings.TrimRight(name[:54], "-"), h.Sum32())
	}
	return name
}

// buildRule merges the routes of one Service in precedence order into its
// TrafficRule. A match that an earlier one already covers (the same match,
// or anything after a catch-all) is never used and is left out; requests
// no route matches get a 404, as the Gateway API says for a Service with
// routes attached.
func buildRule(k mesh.Key, rrs []ruleRoute) *mesh.Resource {
	sort.SliceStable(rrs, func(i, j int) bool { return rrs[i].less(rrs[j]) })
	spec := &mesh.TrafficRuleSpec{Service: k.Name}
	seen := map[string]bool{}
	names := map[string]bool{}
	catchAll := false
	for _, x := range rrs {
		key := matchKey(x.rr.Match)
		if seen[key] {
			continue
		}
		seen[key] = true
		rr := x.rr
		for names[rr.Name] {
			h := fnv.New32a()
			h.Write([]byte(rr.Name))
			rr.Name = fmt.Sprintf("%s-%08x", strings.TrimRight(rr.Name[:min(len(rr.Name), 54)], "-"), h.Sum32())
		}
		names[rr.Name] = true
		spec.Routes = append(spec.Routes, rr)
		if catchAllMatch(rr.Match) {
			catchAll = true
			break
		}
	}
	if !catchAll {
		spec.Routes = append(spec.Routes, mesh.RuleRoute{Name: "no-route-matched", Match: mesh.Match{Prefix: "/"},
			DirectResponse: &config.DirectResponse{Status: 404, Body: "weft: no route of this Service matches the request\n"}})
	}
	return &mesh.Resource{Kind: mesh.KindTrafficRule, Namespace: k.Namespace, Name: k.Name, Spec: spec}
}

func matchKey(m mesh.Match) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func catchAllMatch(m mesh.Match) bool {
	return (m.Prefix == "" || m.Prefix == "/") && m.Path == "" && m.Regex == "" && m.GRPC == nil &&
		len(m.Methods) == 0 && len(m.Headers) == 0 && len(m.Query) == 0 && len(m.Cookies) == 0
}
