package gatewayapi

import (
	"regexp"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

func fromHTTP(r *gwv1.HTTPRoute) *route {
	out := &route{ref: RouteRef{Kind: KindHTTPRoute, Namespace: r.Namespace, Name: r.Name},
		generation: r.Generation, created: r.CreationTimestamp, parents: r.Spec.ParentRefs}
	for _, ru := range r.Spec.Rules {
		x := rule{filters: ru.Filters, backends: ru.BackendRefs, timeouts: ru.Timeouts, retry: ru.Retry, sessions: ru.SessionPersistence != nil}
		if ru.Name != nil {
			x.name = string(*ru.Name)
		}
		ms := ru.Matches
		if len(ms) == 0 {
			ms = []gwv1.HTTPRouteMatch{{}}
		}
		for _, m := range ms {
			x.matches = append(x.matches, httpMatch(m))
		}
		out.rules = append(out.rules, x)
	}
	return out
}

// httpMatch is the weft form of an HTTPRoute match. A PathPrefix matches
// whole path segments ("/api" matches "/api" and "/api/x", not "/apix"),
// so it is two weft matches: the path exactly, then the prefix with a
// trailing "/". A trailing "/" in the value is ignored.
func httpMatch(m gwv1.HTTPRouteMatch) match {
	var base mesh.Match
	if m.Method != nil {
		base.Methods = []string{string(*m.Method)}
	}
	for _, h := range m.Headers {
		hm := mesh.HeaderMatcher{Name: string(h.Name)}
		if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
			hm.Regex = h.Value
		} else {
			hm.Exact = h.Value
		}
		base.Headers = append(base.Headers, hm)
	}
	for _, q := range m.QueryParams {
		qm := mesh.HeaderMatcher{Name: string(q.Name)}
		if q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression {
			qm.Regex = q.Value
		} else {
			qm.Exact = q.Value
		}
		base.Query = append(base.Query, qm)
	}
	out := match{prec: precedence{pathRank: 1, method: m.Method != nil, headers: len(m.Headers), query: len(m.QueryParams)}}
	typ, value := gwv1.PathMatchPathPrefix, "/"
	if p := m.Path; p != nil {
		if p.Type != nil {
			typ = *p.Type
		}
		if p.Value != nil {
			value = *p.Value
		}
	}
	switch typ {
	case gwv1.PathMatchExact:
		mm := base
		mm.Path = value
		out.weft, out.exactPath = []mesh.Match{mm}, true
		out.prec.pathRank, out.prec.pathLen = 0, len(value)
	case gwv1.PathMatchRegularExpression:
		mm := base
		mm.Regex = value
		out.weft = []mesh.Match{mm}
		out.prec.pathRank, out.prec.pathLen = 2, len(value)
	default:
		p := strings.TrimRight(value, "/")
		out.isPrefix, out.prefix = true, p
		out.prec.pathLen = len(p)
		if p == "" {
			mm := base
			mm.Prefix = "/"
			out.weft = []mesh.Match{mm}
			break
		}
		exact, prefix := base, base
		exact.Path, prefix.Prefix = p, p+"/"
		out.weft = []mesh.Match{exact, prefix}
	}
	return out
}

func fromGRPC(r *gwv1.GRPCRoute) *route {
	out := &route{ref: RouteRef{Kind: KindGRPCRoute, Namespace: r.Namespace, Name: r.Name},
		generation: r.Generation, created: r.CreationTimestamp, parents: r.Spec.ParentRefs}
	for _, ru := range r.Spec.Rules {
		x := rule{sessions: ru.SessionPersistence != nil}
		if ru.Name != nil {
			x.name = string(*ru.Name)
		}
		for _, f := range ru.Filters {
			x.filters = append(x.filters, gwv1.HTTPRouteFilter{
				Type:                   gwv1.HTTPRouteFilterType(f.Type),
				RequestHeaderModifier:  f.RequestHeaderModifier,
				ResponseHeaderModifier: f.ResponseHeaderModifier,
				RequestMirror:          f.RequestMirror,
				ExtensionRef:           f.ExtensionRef,
			})
		}
		for _, b := range ru.BackendRefs {
			hb := gwv1.HTTPBackendRef{BackendRef: b.BackendRef}
			for _, f := range b.Filters {
				hb.Filters = append(hb.Filters, gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterType(f.Type)})
			}
			x.backends = append(x.backends, hb)
		}
		ms := ru.Matches
		if len(ms) == 0 {
			ms = []gwv1.GRPCRouteMatch{{}}
		}
		for _, m := range ms {
			x.matches = append(x.matches, grpcMatch(m))
		}
		out.rules = append(out.rules, x)
	}
	return out
}

// grpcMatch is the weft form of a GRPCRoute match: an exact service (and
// method) is the proxy's grpc match (the path /SERVICE/METHOD and a gRPC
// content type); anything else a path regex. Its precedence is that of an
// exact path (service and method) or a prefix (service only) of the same
// length, so HTTP and gRPC routes of one Service order together.
func grpcMatch(m gwv1.GRPCRouteMatch) match {
	var mm mesh.Match
	for _, h := range m.Headers {
		hm := mesh.HeaderMatcher{Name: string(h.Name)}
		if h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression {
			hm.Regex = h.Value
		} else {
			hm.Exact = h.Value
		}
		mm.Headers = append(mm.Headers, hm)
	}
	out := match{prec: precedence{pathRank: 1, headers: len(m.Headers)}}
	mt := m.Method
	if mt == nil || (mt.Service == nil && mt.Method == nil) {
		mm.Prefix = "/"
		out.weft = []mesh.Match{mm}
		return out
	}
	svc, meth := "", ""
	if mt.Service != nil {
		svc = *mt.Service
	}
	if mt.Method != nil {
		meth = *mt.Method
	}
	exact := mt.Type == nil || *mt.Type == gwv1.GRPCMethodMatchExact
	switch {
	case exact && svc != "":
		mm.GRPC = &config.GRPCMatch{Service: svc, Method: meth}
		if meth != "" {
			out.prec.pathRank = 0
		}
		out.prec.pathLen = len(svc) + len(meth) + 2
	case exact:
		mm.Regex = "/[^/]+/" + regexp.QuoteMeta(meth)
		out.prec.pathRank, out.prec.pathLen = 2, len(meth)
	default:
		s, me := svc, meth
		if s == "" {
			s = "[^/]+"
		}
		if me == "" {
			me = "[^/]+"
		}
		mm.Regex = "/" + s + "/" + me
		out.prec.pathRank, out.prec.pathLen = 2, len(svc)+len(meth)
	}
	out.weft = []mesh.Match{mm}
	return out
}
