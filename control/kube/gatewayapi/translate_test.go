package gatewayapi

import (
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/config"
)

// services are the mesh's Services, in namespace shop unless named
// NAMESPACE/NAME.
var services = map[string]Service{
	"shop/reviews":    {Ports: []ServicePort{{Name: "http", Port: 9080, Mesh: "reviews"}}},
	"shop/reviews-v1": {Ports: []ServicePort{{Name: "http", Port: 9080, Mesh: "reviews-v1"}}},
	"shop/reviews-v2": {Ports: []ServicePort{{Name: "http", Port: 9080, Mesh: "reviews-v2"}}},
	"shop/shadow":     {Ports: []ServicePort{{Name: "http", Port: 80, Mesh: "shadow"}}},
	"shop/multi":      {Ports: []ServicePort{{Name: "http", Port: 80, Mesh: "multi"}, {Name: "admin", Port: 81, Mesh: "multi-admin"}}},
	"shop/idle":       {Ports: []ServicePort{{Name: "http", Port: 80}}}, // no ready endpoint
	"other/ratings":   {Ports: []ServicePort{{Name: "http", Port: 80, Mesh: "ratings"}}},
}

func input(docs ...string) Input {
	in := Input{
		Service: func(ns, name string) (Service, bool) { s, ok := services[ns+"/"+name]; return s, ok },
		Filter:  func(ns, name string) bool { return ns == "shop" && name == "authz" },
	}
	for _, d := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(d), &tm); err != nil {
			panic(err)
		}
		switch tm.Kind {
		case "HTTPRoute":
			var r gwv1.HTTPRoute
			if err := yaml.UnmarshalStrict([]byte(d), &r); err != nil {
				panic(err)
			}
			in.HTTPRoutes = append(in.HTTPRoutes, &r)
		case "GRPCRoute":
			var r gwv1.GRPCRoute
			if err := yaml.UnmarshalStrict([]byte(d), &r); err != nil {
				panic(err)
			}
			in.GRPCRoutes = append(in.GRPCRoutes, &r)
		case "ReferenceGrant":
			var g gwv1beta1.ReferenceGrant
			if err := yaml.UnmarshalStrict([]byte(d), &g); err != nil {
				panic(err)
			}
			in.Grants = append(in.Grants, &g)
		default:
			panic("kind " + tm.Kind)
		}
	}
	return in
}

func httpRoute(name, created, spec string) string {
	return "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " + name +
		", namespace: shop, generation: 3, creationTimestamp: \"" + created + "\"}\nspec:\n" + spec
}

const parentReviews = "  parentRefs: [{group: \"\", kind: Service, name: reviews, port: 9080}]\n"

// compile checks that the rules are a valid mesh with the Services, exactly
// as the store will, and returns the reviews virtual host's routes.
func compile(t *testing.T, rules []*mesh.Resource) []config.Route {
	t.Helper()
	rs := append([]*mesh.Resource(nil), rules...)
	for k, s := range services {
		ns, _, _ := strings.Cut(k, "/")
		for _, p := range s.Ports {
			if p.Mesh != "" {
				rs = append(rs, &mesh.Resource{Kind: mesh.KindService, Namespace: ns, Name: p.Mesh,
					Spec: &mesh.ServiceSpec{Endpoints: []mesh.Endpoint{{Address: "127.0.0.1:1"}}}})
			}
		}
	}
	rs = append(rs, &mesh.Resource{Kind: mesh.KindFilter, Namespace: "shop", Name: "authz",
		Spec: &mesh.FilterSpec{Module: mesh.ModuleRef{SHA256: strings.Repeat("a", 64)}}})
	rs = append(rs, &mesh.Resource{Kind: mesh.KindSidecar, Namespace: "shop", Name: "web",
		Spec: &mesh.SidecarSpec{Outbound: "127.0.0.1:15001"}})
	out, err := mesh.Compile(mesh.New(rs), mesh.Options{ModuleURL: func(d string) string { return "http://control/v1/modules/" + d }})
	if err != nil {
		t.Fatalf("the translated rules do not compile: %v", err)
	}
	for _, vh := range out["web"].Config.Listeners[0].VirtualHosts {
		if vh.Name == "reviews.shop" {
			return vh.Routes
		}
	}
	t.Fatal("no reviews virtual host")
	return nil
}

func routeSummary(rs []config.Route) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Name + " ")
		m := r.Match
		switch {
		case m.Path != "":
			b.WriteString("path=" + m.Path)
		case m.Regex != "":
			b.WriteString("regex=" + m.Regex)
		case m.GRPC != nil:
			b.WriteString("grpc=" + m.GRPC.Service + "/" + m.GRPC.Method)
		default:
			b.WriteString("prefix=" + m.Prefix)
		}
		for _, x := range m.Methods {
			b.WriteString(" method=" + x)
		}
		for _, h := range m.Headers {
			b.WriteString(" header:" + h.Name + "=" + h.Exact + h.Regex + h.Prefix)
		}
		for _, h := range m.Query {
			b.WriteString(" query:" + h.Name + "=" + h.Exact + h.Regex)
		}
		switch {
		case r.DirectResponse != nil:
			b.WriteString(" -> " + itoa(r.DirectResponse.Status))
		case r.Redirect != nil:
			b.WriteString(" -> redirect " + r.Redirect.Scheme + "://" + r.Redirect.Host + r.Redirect.Path + " " + itoa(r.Redirect.StatusCode))
		case r.Route.Cluster != "":
			b.WriteString(" -> " + r.Route.Cluster)
		default:
			b.WriteString(" ->")
			for _, w := range r.Route.WeightedClusters {
				b.WriteString(" " + w.Cluster + ":" + itoa(w.Weight))
			}
		}
		if r.Route != nil && r.Route.PrefixRewrite != "" {
			b.WriteString(" rewrite=" + r.Route.PrefixRewrite)
		}
		if r.Route != nil && r.Route.PathRewrite != "" {
			b.WriteString(" path_rewrite=" + r.Route.PathRewrite)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

// Several routes on one Service merge in Gateway API precedence order:
// exact path, longest prefix, method, most headers, most query matches,
// then the oldest route; a PathPrefix matches whole segments; weights
// become whole percents; what no route matches gets a 404.
func TestMergePrecedence(t *testing.T) {
	res := Translate(input(
		httpRoute("old", "2026-01-01T00:00:00Z", parentReviews+`  rules:
  - matches: [{path: {type: PathPrefix, value: /api/}}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 3}, {name: reviews-v2, port: 9080, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: reviews-v2, port: 9080}]
`),
		httpRoute("new", "2026-02-01T00:00:00Z", parentReviews+`  rules:
  - matches:
    - {path: {type: Exact, value: /api/health}}
    - {path: {type: PathPrefix, value: /api}, method: POST}
    - {path: {type: RegularExpression, value: "/v[0-9]+/.*"}}
    - {path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: "yes"}]}
    - {path: {type: PathPrefix, value: /}, queryParams: [{name: debug, value: "1"}]}
    backendRefs: [{name: reviews, port: 9080}]
`),
	))
	if len(res.Rules) != 1 || res.Rules[0].Key() != (mesh.Key{Kind: mesh.KindTrafficRule, Namespace: "shop", Name: "reviews"}) {
		t.Fatalf("rules: %+v", res.Rules)
	}
	got := routeSummary(compile(t, res.Rules))
	want := `reviews.shop/http-new-0-0 path=/api/health -> reviews.shop
reviews.shop/http-new-0-1-0 path=/api method=POST -> reviews.shop
reviews.shop/http-new-0-1-1 prefix=/api/ method=POST -> reviews.shop
reviews.shop/http-old-1-0-0 path=/api header:x-canary=yes -> reviews-v2.shop
reviews.shop/http-old-1-0-1 prefix=/api/ header:x-canary=yes -> reviews-v2.shop
reviews.shop/http-old-0-0-0 path=/api -> reviews-v1.shop:75 reviews-v2.shop:25
reviews.shop/http-old-0-0-1 prefix=/api/ -> reviews-v1.shop:75 reviews-v2.shop:25
reviews.shop/http-new-0-4 prefix=/ query:debug=1 -> reviews.shop
reviews.shop/http-new-0-2 regex=/v[0-9]+/.* -> reviews.shop
reviews.shop/no-route-matched prefix=/ -> 404
`
	if got != want {
		t.Fatalf("merged routes:\n%s\nwant:\n%s", got, want)
	}
	// The newer route's match equal to the older's was left out (the older
	// wins); both routes are accepted with their references resolved.
	for _, st := range res.Statuses {
		if len(st.Parents) != 1 || st.Parents[0].ControllerName != ControllerName {
			t.Fatalf("%s: parents %+v", st.Route, st.Parents)
		}
		assertConditions(t, st, "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
	}
}

func assertConditions(t *testing.T, st RouteStatus, want ...string) {
	t.Helper()
	var got []string
	for _, c := range st.Parents[0].Conditions {
		got = append(got, c.Type+"="+string(c.Status)+"/"+c.Reason)
		if c.ObservedGeneration != st.Generation || st.Generation == 0 {
			t.Errorf("%s: condition %s observedGeneration %d, route generation %d", st.Route, c.Type, c.ObservedGeneration, st.Generation)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s: conditions %v, want %v (%+v)", st.Route, got, want, st.Parents[0].Conditions)
	}
}

func message(st RouteStatus, typ string) string {
	for _, c := range st.Parents[0].Conditions {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}

// Filters become the route's header edits, rewrite, redirect, mirror,
// Wasm filter; timeouts its timeout and per-try timeout.
func TestFiltersAndTimeouts(t *testing.T) {
	res := Translate(input(httpRoute("f", "2026-01-01T00:00:00Z", parentReviews+`  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, statusCode: 301}}
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - {type: URLRewrite, urlRewrite: {hostname: reviews.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: "1"}], add: [{name: x-b, value: "2"}], remove: [x-c]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-served-by, value: weft}]}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}, fraction: {numerator: 1, denominator: 4}}}
    - {type: ExtensionRef, extensionRef: {group: weftmesh.io, kind: Filter, name: authz}}
    backendRefs: [{name: reviews, port: 9080}]
    timeouts: {request: 3s, backendRequest: 1s}
  - matches: [{path: {type: PathPrefix, value: /legacy}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /current}}}]
    backendRefs: [{name: reviews, port: 9080}]
`)))
	assertConditions(t, res.Statuses[0], "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
	rs := compile(t, res.Rules)
	got := routeSummary(rs)
	want := `reviews.shop/http-f-2-0-0 path=/legacy -> reviews.shop path_rewrite=/current
reviews.shop/http-f-2-0-1 prefix=/legacy/ -> reviews.shop path_rewrite=/current
reviews.shop/http-f-0-0-0 path=/old -> redirect https://example.com 301
reviews.shop/http-f-0-0-1 prefix=/old/ -> redirect https://example.com 301
reviews.shop/http-f-1-0-0 path=/v1 -> reviews.shop rewrite=/v2
reviews.shop/http-f-1-0-1 prefix=/v1/ -> reviews.shop rewrite=/v2/
reviews.shop/no-route-matched prefix=/ -> 404
`
	if got != want {
		t.Fatalf("routes:\n%s\nwant:\n%s", got, want)
	}
	r := rs[5]
	if r.Route.HostRewrite != "reviews.internal" || r.Route.Timeout.D() != 3*time.Second || r.Route.Retry.PerTryTimeout.D() != time.Second ||
		r.Route.Mirror == nil || r.Route.Mirror.Cluster != "shadow.shop" || r.Route.Mirror.Percent != 25 ||
		len(r.RequestHeaders.Set) != 1 || r.RequestHeaders.Add[0].Name != "x-b" || r.RequestHeaders.Remove[0] != "x-c" ||
		r.ResponseHeaders.Set[0].Value != "weft" || strings.Join(r.Filters, ",") != "authz.shop" {
		t.Fatalf("rewrite route: %+v %+v", r, r.Route)
	}
}

// What weft cannot do, or cannot find, is reported with the spec's
// reasons: a rule weft cannot do is dropped (PartiallyInvalid), a route
// with none usable is not accepted, an unresolved backend is left out.
func TestStatusReasons(t *testing.T) {
	for _, c := range []struct {
		name, spec string
		conds      []string
		msg        string // in the first False (or PartiallyInvalid) condition
		routes     string // the reviews routes, "" when no rule
	}{
		{"missing backend", parentReviews + `  rules:
  - backendRefs: [{name: reviews-v1, port: 9080}, {name: nope, port: 9080}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=False/BackendNotFound"}, "backendRefs[1]: Service shop/nope does not exist",
			"reviews.shop/http-r-0-0 prefix=/ -> reviews-v1.shop\n"},
		{"backend without ready endpoints", parentReviews + `  rules:
  - backendRefs: [{name: idle, port: 80}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs"}, "", "reviews.shop/http-r-0-0 prefix=/ -> 503\n"},
		{"all backends missing", parentReviews + `  rules:
  - backendRefs: [{name: nope, port: 9080}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=False/BackendNotFound"}, "Service shop/nope does not exist",
			"reviews.shop/http-r-0-0 prefix=/ -> 500\n"},
		{"wrong kind", parentReviews + `  rules:
  - backendRefs: [{group: example.com, kind: Bucket, name: b}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=False/InvalidKind"}, "example.com Bucket: weft routes only to core Services",
			"reviews.shop/http-r-0-0 prefix=/ -> 500\n"},
		{"cross namespace without grant", parentReviews + `  rules:
  - backendRefs: [{name: ratings, namespace: other, port: 80}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=False/RefNotPermitted"}, "no ReferenceGrant there allows HTTPRoutes from namespace shop",
			"reviews.shop/http-r-0-0 prefix=/ -> 500\n"},
		{"wrong port", parentReviews + `  rules:
  - backendRefs: [{name: reviews-v1, port: 1}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=False/BackendNotFound"}, "has no TCP port 1", "reviews.shop/http-r-0-0 prefix=/ -> 500\n"},
		{"unsupported filter drops the rule", parentReviews + `  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    filters: [{type: CORS, cors: {allowOrigins: ["https://x.example"]}}]
    backendRefs: [{name: reviews, port: 9080}]
  - backendRefs: [{name: reviews, port: 9080}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs", "PartiallyInvalid=True/UnsupportedValue"},
			"Dropped Rule(s): rule 0: filters[0]: the CORS filter is not supported by weft", "reviews.shop/http-r-1-0 prefix=/ -> reviews.shop\n"},
		{"no usable rule", parentReviews + `  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}]
`, []string{"Accepted=False/UnsupportedValue", "ResolvedRefs=True/ResolvedRefs"}, "no rule is usable: rule 0: requestRedirect.path.replacePrefixMatch is supported by weft only with an Exact path match", ""},
		{"session persistence", parentReviews + `  rules:
  - sessionPersistence: {sessionName: s, type: Cookie}
    backendRefs: [{name: reviews, port: 9080}]
`, []string{"Accepted=False/UnsupportedValue", "ResolvedRefs=True/ResolvedRefs"}, "rule 0: sessionPersistence is not supported by weft", ""},
		{"incompatible filters", parentReviews + `  rules:
  - filters:
    - {type: URLRewrite, urlRewrite: {hostname: a.example}}
    - {type: RequestRedirect, requestRedirect: {hostname: b.example}}
`, []string{"Accepted=False/IncompatibleFilters", "ResolvedRefs=True/ResolvedRefs"}, "cannot be used together", ""},
		{"missing parent", `  parentRefs: [{group: "", kind: Service, name: gone}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
`, []string{"Accepted=False/NoMatchingParent", "ResolvedRefs=True/ResolvedRefs"}, "Service shop/gone does not exist", ""},
		{"parent port", `  parentRefs: [{group: "", kind: Service, name: reviews, port: 81}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
`, []string{"Accepted=False/NoMatchingParent", "ResolvedRefs=True/ResolvedRefs"}, "Service shop/reviews has no port 81", ""},
		{"consumer route", `  parentRefs: [{group: "", kind: Service, name: ratings, namespace: other}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
`, []string{"Accepted=False/UnsupportedValue", "ResolvedRefs=True/ResolvedRefs"}, "consumer routes", ""},
		{"missing wasm filter fails its requests", parentReviews + `  rules:
  - filters: [{type: ExtensionRef, extensionRef: {group: weftmesh.io, kind: Filter, name: nope}}]
    backendRefs: [{name: reviews, port: 9080}]
`, []string{"Accepted=True/Accepted", "ResolvedRefs=False/BackendNotFound"}, "no Filter shop/nope", "reviews.shop/http-r-0-0 prefix=/ -> 500\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := Translate(input(httpRoute("r", "2026-01-01T00:00:00Z", c.spec)))
			if len(res.Statuses) != 1 || len(res.Statuses[0].Parents) != 1 {
				t.Fatalf("statuses: %+v", res.Statuses)
			}
			st := res.Statuses[0]
			assertConditions(t, st, c.conds...)
			msg := ""
			for _, cd := range st.Parents[0].Conditions {
				if c.msg == "" {
					break
				}
				if cd.Status == metav1.ConditionFalse || cd.Type == "PartiallyInvalid" {
					msg = cd.Message
					break
				}
			}
			if !strings.Contains(msg, c.msg) {
				t.Errorf("message %q, want it to say %q", msg, c.msg)
			}
			if c.routes == "" {
				if len(res.Rules) != 0 {
					t.Fatalf("a route not accepted made rules: %+v", res.Rules[0].Spec)
				}
				return
			}
			got := routeSummary(compile(t, res.Rules))
			if got != c.routes {
				t.Fatalf("routes:\n%s\nwant:\n%s", got, c.routes)
			}
		})
	}
}

// A ReferenceGrant in the backend's namespace allows a cross-namespace
// backendRef; a route naming a Gateway is not weft's to answer.
func TestReferenceGrantAndGatewayParents(t *testing.T) {
	grant := `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-shop, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: "", kind: Service, name: ratings}]
`
	res := Translate(input(grant, httpRoute("r", "2026-01-01T00:00:00Z", `  parentRefs:
  - {name: edge}
  - {group: "", kind: Service, name: reviews}
  rules: [{backendRefs: [{name: ratings, namespace: other, port: 80}]}]
`)))
	st := res.Statuses[0]
	if len(st.Parents) != 1 || st.Parents[0].ParentRef.Name != "reviews" {
		t.Fatalf("parents: %+v", st.Parents)
	}
	assertConditions(t, st, "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
	if got := routeSummary(compile(t, res.Rules)); got != "reviews.shop/http-r-0-0 prefix=/ -> ratings.other\n" {
		t.Fatalf("routes: %s", got)
	}
}

// GRPCRoute matches become the proxy's grpc matches (or path regexes), in
// the same precedence as HTTP matches of the Service.
func TestGRPCRoute(t *testing.T) {
	res := Translate(input(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: shop, generation: 1, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches: [{method: {service: reviews.Reviews}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches:
    - {method: {service: reviews.Reviews, method: Get}, headers: [{name: x-canary, value: "yes"}]}
    - {method: {method: Health}}
    - {method: {type: RegularExpression, service: "reviews\\..*"}}
    backendRefs: [{name: reviews-v2, port: 9080}]
`))
	assertConditions(t, res.Statuses[0], "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
	got := routeSummary(compile(t, res.Rules))
	want := `reviews.shop/grpc-g-1-0 path=/reviews.Reviews/Get header:x-canary=yes header:content-type=application/grpc -> reviews-v2.shop
reviews.shop/grpc-g-0-0 grpc=reviews.Reviews/ header:content-type=application/grpc -> reviews-v1.shop
reviews.shop/grpc-g-1-2 regex=/reviews\..*/[^/]+ -> reviews-v2.shop
reviews.shop/grpc-g-1-1 regex=/[^/]+/Health -> reviews-v2.shop
reviews.shop/no-route-matched prefix=/ -> 404
`
	if got != want {
		t.Fatalf("routes:\n%s\nwant:\n%s", got, want)
	}
}

// A status is merged into what is stored: other controllers' entries stay,
// an unchanged condition keeps its time (and nothing is written), a stale
// view writes nothing.
func TestMergeStatus(t *testing.T) {
	res := Translate(input(httpRoute("r", "2026-01-01T00:00:00Z", parentReviews+"  rules: [{backendRefs: [{name: reviews, port: 9080}]}]\n")))
	ours := res.Statuses[0]
	other := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "edge"}, ControllerName: "example.com/gateway",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted"}}}
	t1 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t2 := metav1.NewTime(t1.Add(time.Hour))

	merged, write := MergeStatus([]gwv1.RouteParentStatus{other}, ours, t1)
	if !write || len(merged) != 2 || merged[0].ControllerName != "example.com/gateway" || merged[1].ControllerName != ControllerName ||
		!merged[1].Conditions[0].LastTransitionTime.Equal(&t1) {
		t.Fatalf("first write: %v %+v", write, merged)
	}
	again, write := MergeStatus(merged, ours, t2)
	if write || !equalTimes(again[1].Conditions, t1) {
		t.Fatalf("an unchanged status is written again: %+v", again)
	}
	// The backend disappears: ResolvedRefs turns False at t2; Accepted
	// keeps its time.
	broken := Translate(Input{HTTPRoutes: input(httpRoute("r", "2026-01-01T00:00:00Z", parentReviews+"  rules: [{backendRefs: [{name: nope, port: 9080}]}]\n")).HTTPRoutes,
		Service: input().Service})
	changed, write := MergeStatus(merged, broken.Statuses[0], t2)
	if !write || !changed[1].Conditions[0].LastTransitionTime.Equal(&t1) || !changed[1].Conditions[1].LastTransitionTime.Equal(&t2) ||
		changed[1].Conditions[1].Status != metav1.ConditionFalse {
		t.Fatalf("changed status: %+v", changed[1].Conditions)
	}
	// A stored condition from a newer generation: this view is stale.
	stale := ours
	stale.Parents = append([]gwv1.RouteParentStatus(nil), ours.Parents...)
	stale.Parents[0].Conditions = append([]metav1.Condition(nil), ours.Parents[0].Conditions...)
	for i := range stale.Parents[0].Conditions {
		stale.Parents[0].Conditions[i].ObservedGeneration = 1
	}
	if _, write := MergeStatus(changed, stale, t2); write {
		t.Fatal("a stale view overwrote a newer status")
	}
	// The Service parentRef is removed: weft's entry goes, the other stays.
	gone, write := MergeStatus(changed, RouteStatus{Route: ours.Route, Generation: 4}, t2)
	if !write || len(gone) != 1 || gone[0].ControllerName != "example.com/gateway" {
		t.Fatalf("after the parentRef went: %+v", gone)
	}
}

func equalTimes(cs []metav1.Condition, at metav1.Time) bool {
	for _, c := range cs {
		if !c.LastTransitionTime.Equal(&at) {
			return false
		}
	}
	return true
}

// Each port of a Service is a mesh Service: a parentRef's port (or
// sectionName) picks that port's, none picks every port's; a Service with
// no ready endpoint takes the route once it has one.
func TestParentPorts(t *testing.T) {
	rule := "  rules: [{backendRefs: [{name: reviews, port: 9080}]}]\n"
	for _, c := range []struct{ parent, rules, msg string }{
		{`{group: "", kind: Service, name: multi, port: 81}`, "TrafficRule shop/multi-admin", "weft routes"},
		{`{group: "", kind: Service, name: multi, sectionName: http}`, "TrafficRule shop/multi", "weft routes"},
		{`{group: "", kind: Service, name: multi}`, "TrafficRule shop/multi TrafficRule shop/multi-admin", "weft routes"},
		{`{group: "", kind: Service, name: idle}`, "", "no ready endpoint yet"},
	} {
		res := Translate(input(httpRoute("r", "2026-01-01T00:00:00Z", "  parentRefs: ["+c.parent+"]\n"+rule)))
		var keys []string
		for _, r := range res.Rules {
			keys = append(keys, r.Key().String())
			if r.File != "HTTPRoute shop/r" {
				t.Errorf("%s: rule from %q", r.Key(), r.File)
			}
		}
		if strings.Join(keys, " ") != c.rules {
			t.Errorf("%s: rules %v, want %s", c.parent, keys, c.rules)
		}
		assertConditions(t, res.Statuses[0], "Accepted=True/Accepted", "ResolvedRefs=True/ResolvedRefs")
		if m := message(res.Statuses[0], "Accepted"); !strings.Contains(m, c.msg) {
			t.Errorf("%s: Accepted message %q", c.parent, m)
		}
	}
}
