package kube_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/store"
)

// gwWait bounds every wait: generous, CI is a loaded 2-core box.
const gwWait = 60 * time.Second

// gwEventually polls cond until it holds, failing after gwWait with the
// last state it reported.
func gwEventually(t testing.TB, what string, cond func() (string, bool)) {
	t.Helper()
	deadline := time.Now().Add(gwWait)
	for {
		last, ok := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %s", what, last, gwWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gwCRDs installs the Gateway API's standard CRDs and weft's own on the
// shared API server (once; ApplyCRDs tolerates ones that exist).
func gwCRDs(t testing.TB, e *kubetest.Env) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "crds", "*.yaml"))
	if err != nil || len(files) != len(weftcrd.Kinds) {
		t.Fatalf("weft CRDs: %v %v", files, err)
	}
	e.ApplyCRDs(append(kubetest.GatewayAPICRDs(t, "standard"), files...)...)
}

// gwControl starts a control plane whose Kubernetes source runs every
// translator (discovery, weft's CRDs, the Gateway API) with the control
// plane's own RBAC (deploy/kubernetes/rbac.yaml), and declares sidecars.
func gwControl(t testing.TB, cfg *rest.Config, ns string, nodes ...string) *server.Server {
	t.Helper()
	o := server.Options{DataDir: t.TempDir(), Kube: &kube.Options{Config: cfg,
		Translators: []kube.Translator{kube.Discovery(), kube.WeftResources(), kube.GatewayAPI()}}}
	cp := meshtest.StartControl(t, o)
	t.Cleanup(func() { _ = cp.Close() })
	var rs []*mesh.Resource
	for _, n := range nodes {
		rs = append(rs, &mesh.Resource{Kind: mesh.KindSidecar, Namespace: ns, Name: n, Spec: &mesh.SidecarSpec{Outbound: "127.0.0.1:0"}})
	}
	if len(rs) > 0 {
		if _, err := cp.Store().Apply(store.Change{Who: "test", Source: store.SourceAPI, Puts: rs}); err != nil {
			t.Fatal(err)
		}
	}
	return cp
}

// gwGet sends GET path with host and headers (name, value, ...) through
// a sidecar's outbound listener.
func gwGet(sc *meshtest.Sidecar, host, path string, hdr ...string) (int, string, error) {
	addr := sc.Proxy.ListenerAddr("outbound")
	if addr == nil {
		return 0, "", fmt.Errorf("%s has no outbound listener yet", sc.ID)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := meshtest.HTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// sample sends n requests and counts answers as "STATUS BODY".
func sample(sc *meshtest.Sidecar, host, path string, n int, hdr ...string) map[string]int {
	got := map[string]int{}
	for range n {
		code, body, err := gwGet(sc, host, path, hdr...)
		if err != nil {
			got["error"]++
			continue
		}
		got[fmt.Sprintf("%d %s", code, strings.TrimSpace(body))]++
	}
	return got
}

func render(m map[string]int) string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// routeConditions renders weft's status.parents entries of an HTTPRoute as
// "CONTROLLER PARENT: Type=Status/Reason@gen ...", with the route's
// generation.
func routeConditions(ctx context.Context, gw gwclient.Interface, ns, name string) (string, int64) {
	r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error(), 0
	}
	var s []string
	for _, p := range r.Status.Parents {
		var cs []string
		for _, c := range p.Conditions {
			cs = append(cs, fmt.Sprintf("%s=%s/%s@%d", c.Type, c.Status, c.Reason, c.ObservedGeneration))
		}
		s = append(s, fmt.Sprintf("%s %s: %s", p.ControllerName, p.ParentRef.Name, strings.Join(cs, " ")))
	}
	return strings.Join(s, "; "), r.Generation
}

func backend(name string, weight int32) gwv1.HTTPBackendRef {
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{Weight: ptr(weight),
		BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr(gwv1.PortNumber(9080))}}}
}

// HTTPRoutes attached to a Service route every sidecar's requests to it:
// header and path matches, a canary whose weights change under load with
// no failed request, a route naming a missing backend reported in its
// status (conditions asserted exactly), and deleting the routes falls
// back to the Service's own endpoints.
func TestGatewayAPIRoutes(t *testing.T) {
	e := kubetest.Shared(t)
	gwCRDs(t, e)
	ns := e.NewNamespace("gw")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ip := hostIP(t)
	v1, v2 := startUpstream(t, ip, "v1"), startUpstream(t, ip, "v2")
	// reviews selects both versions; reviews-v1 and reviews-v2 one each.
	for _, name := range []string{"reviews", "reviews-v1", "reviews-v2"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
		if _, err := e.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	slices := e.Client.DiscoveryV1().EndpointSlices(ns)
	for _, s := range []struct {
		svc string
		u   *upstream
	}{{"reviews", v1}, {"reviews", v2}, {"reviews-v1", v1}, {"reviews-v2", v2}} {
		if _, err := slices.Create(ctx, upstreamSlice(t, ns, s.svc, s.u), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	node := ns + "-web"
	cp := gwControl(t, controlPlaneConfig(t, e), ns, node)
	sc := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: node, URL: cp.URL()})
	host := "reviews." + ns

	// Without a route, the Service's requests go to all its endpoints.
	gwEventually(t, "both versions through the Service", func() (string, bool) {
		got := sample(sc, host, "/", 20)
		return render(got), got["200 v1"] > 0 && got["200 v2"] > 0 && got["200 v1"]+got["200 v2"] == 20
	})

	gw := gwclient.NewForConfigOrDie(e.Config)
	route := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
				{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: "reviews", Port: ptr(gwv1.PortNumber(9080))}}},
			Rules: []gwv1.HTTPRouteRule{
				{Matches: []gwv1.HTTPRouteMatch{{Headers: []gwv1.HTTPHeaderMatch{{Name: "x-canary", Value: "yes"}}}},
					BackendRefs: []gwv1.HTTPBackendRef{backend("reviews-v2", 1)}},
				{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/preview")}}},
					BackendRefs: []gwv1.HTTPBackendRef{backend("reviews-v2", 1)},
					Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterResponseHeaderModifier,
						ResponseHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "x-route", Value: "preview"}}}}}},
				{BackendRefs: []gwv1.HTTPBackendRef{backend("reviews-v1", 100), backend("reviews-v2", 0)}},
			}}}
	if _, err := gw.GatewayV1().HTTPRoutes(ns).Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the route's status", func() (string, bool) {
		s, _ := routeConditions(ctx, gw, ns, "reviews")
		return s, s == "weftmesh.io/control reviews: Accepted=True/Accepted@1 ResolvedRefs=True/ResolvedRefs@1"
	})
	// The default rule sends everything to v1; the header and the path
	// prefix (whole segments only) to v2.
	gwEventually(t, "the route applied", func() (string, bool) {
		got := sample(sc, host, "/", 20)
		return render(got), got["200 v1"] == 20
	})
	for _, c := range []struct {
		path string
		hdr  []string
		want string
	}{
		{"/", []string{"x-canary", "yes"}, "200 v2×10"},
		{"/", []string{"x-canary", "no"}, "200 v1×10"},
		{"/preview", nil, "200 v2×10"},
		{"/preview/item/7", nil, "200 v2×10"},
		{"/previewer", nil, "200 v1×10"},
	} {
		if got := render(sample(sc, host, c.path, 10, c.hdr...)); got != c.want {
			t.Errorf("GET %s %v: %s, want %s", c.path, c.hdr, got, c.want)
		}
	}

	// A GRPCRoute on the same Service: its method match merges with the
	// HTTPRoute's rules (an exact method before the catch-all).
	grpcRoute := &gwv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-grpc"},
		Spec: gwv1.GRPCRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
				{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: "reviews"}}},
			Rules: []gwv1.GRPCRouteRule{{
				Matches:     []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Service: ptr("reviews.Reviews"), Method: ptr("Get")}}},
				BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: backend("reviews-v2", 1).BackendRef}}}},
		}}
	if _, err := gw.GatewayV1().GRPCRoutes(ns).Create(ctx, grpcRoute, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the GRPCRoute's status and routing", func() (string, bool) {
		r, err := gw.GatewayV1().GRPCRoutes(ns).Get(ctx, "reviews-grpc", metav1.GetOptions{})
		if err != nil || len(r.Status.Parents) != 1 {
			return fmt.Sprint(err), false
		}
		var cs []string
		for _, c := range r.Status.Parents[0].Conditions {
			cs = append(cs, fmt.Sprintf("%s=%s/%s@%d", c.Type, c.Status, c.Reason, c.ObservedGeneration))
		}
		got := render(sample(sc, host, "/reviews.Reviews/Get", 5, "content-type", "application/grpc"))
		s := strings.Join(cs, " ") + "; " + got
		return s, s == "Accepted=True/Accepted@1 ResolvedRefs=True/ResolvedRefs@1; 200 v2×5"
	})
	if got := render(sample(sc, host, "/reviews.Reviews/List", 5, "content-type", "application/grpc")); got != "200 v1×5" {
		t.Errorf("another gRPC method: %s, want the HTTPRoute's default (v1)", got)
	}
	if err := gw.GatewayV1().GRPCRoutes(ns).Delete(ctx, "reviews-grpc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// The canary under load: 100/0 → 50/50 → 0/100, not one request lost.
	l := startLoad(t, host, sc)
	setWeights := func(w1, w2 int32) {
		t.Helper()
		// The control plane writes the route's status meanwhile: on a
		// conflict, read it again and retry, as a controller would.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "reviews", metav1.GetOptions{})
			if err != nil {
				return err
			}
			r.Spec.Rules[2].BackendRefs = []gwv1.HTTPBackendRef{backend("reviews-v1", w1), backend("reviews-v2", w2)}
			_, err = gw.GatewayV1().HTTPRoutes(ns).Update(ctx, r, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setWeights(50, 50)
	gwEventually(t, "the 50/50 split", func() (string, bool) {
		got := sample(sc, host, "/", 40)
		return render(got), got["200 v1"] > 0 && got["200 v2"] > 0 && got["200 v1"]+got["200 v2"] == 40
	})
	setWeights(0, 100)
	gwEventually(t, "all on v2", func() (string, bool) {
		got := sample(sc, host, "/", 20)
		return render(got), got["200 v2"] == 20
	})
	okBefore := l.ok.Load()
	gwEventually(t, "more load", func() (string, bool) { return fmt.Sprint(l.ok.Load()), l.ok.Load() > okBefore+100 })
	l.end()
	if n := l.fail.Load(); n != 0 || l.ok.Load() == 0 {
		t.Fatalf("%d of %d requests failed while the canary weights changed: %v", n, n+l.ok.Load(), l.failures)
	}
	t.Logf("canary 100/0 → 50/50 → 0/100: %d requests, 0 failed", l.ok.Load())
	gwEventually(t, "the status at generation 3", func() (string, bool) {
		s, gen := routeConditions(ctx, gw, ns, "reviews")
		return s, gen == 3 && s == "weftmesh.io/control reviews: Accepted=True/Accepted@3 ResolvedRefs=True/ResolvedRefs@3"
	})
	// A status is written only when it changes: a sync for another reason
	// (a new Service) leaves the route as it is.
	before, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ratings"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := e.Client.CoreV1().Services(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slices.Create(ctx, upstreamSlice(t, ns, "ratings", v1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "ratings in the mesh", func() (string, bool) {
		_, ok := cp.Store().Get(mesh.Key{Kind: mesh.KindService, Namespace: ns, Name: "ratings"})
		return fmt.Sprint(ok), ok
	})

	// A route naming a Service that does not exist: accepted, the
	// reference reported, its requests answered 500.
	broken := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
				{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: "reviews"}}},
			Rules: []gwv1.HTTPRouteRule{{
				Matches:     []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchExact), Value: ptr("/broken")}}},
				BackendRefs: []gwv1.HTTPBackendRef{backend("reviews-v9", 1)}}},
		}}
	if _, err := gw.GatewayV1().HTTPRoutes(ns).Create(ctx, broken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the broken route's status", func() (string, bool) {
		s, _ := routeConditions(ctx, gw, ns, "broken")
		return s, s == "weftmesh.io/control reviews: Accepted=True/Accepted@1 ResolvedRefs=False/BackendNotFound@1"
	})
	// Statuses are written one at a time in the order the syncs queued
	// them, so once the broken route's (queued by a later sync) is in, a
	// write of reviews' queued by the sync for ratings would be too.
	if after, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "reviews", metav1.GetOptions{}); err != nil || after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("an unchanged status was written again (resourceVersion %s → %s, %v)", before.ResourceVersion, after.ResourceVersion, err)
	}
	r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "broken", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if msg := r.Status.Parents[0].Conditions[1].Message; msg != "backendRefs[0]: Service "+ns+"/reviews-v9 does not exist" {
		t.Errorf("ResolvedRefs message: %q", msg)
	}
	gwEventually(t, "/broken answered 500", func() (string, bool) {
		got := render(sample(sc, host, "/broken", 5))
		return got, strings.HasPrefix(got, "500 ") && strings.HasSuffix(got, "×5")
	})

	// Deleting the routes falls back to the Service: both versions again,
	// and a path no route matched is no longer a 404.
	for _, name := range []string{"reviews", "broken"} {
		if err := gw.GatewayV1().HTTPRoutes(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gwEventually(t, "the fallback to the Service", func() (string, bool) {
		got := sample(sc, host, "/broken", 20)
		return render(got), got["200 v1"] > 0 && got["200 v2"] > 0 && got["200 v1"]+got["200 v2"] == 20
	})
	if _, ok := cp.Store().Get(mesh.Key{Kind: mesh.KindTrafficRule, Namespace: ns, Name: "reviews"}); ok {
		t.Fatal("the routes' TrafficRule is still in the store")
	}
}

// Weft's own resources as custom resources: a valid one is accepted and
// used (a Sidecar declared by its object joins and routes), an invalid one
// is refused with a condition naming the field and never reaches a
// sidecar, and a valid object made invalid keeps its last good version in
// force.
func TestWeftCRDs(t *testing.T) {
	e := kubetest.Shared(t)
	gwCRDs(t, e)
	ns := e.NewNamespace("crd")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ip := hostIP(t)
	u := startUpstream(t, ip, "cart")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := e.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, upstreamSlice(t, ns, "cart", u), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cp := gwControl(t, controlPlaneConfig(t, e), ns)
	dyn := dynamic.NewForConfigOrDie(e.Config)
	res := func(k mesh.Kind) dynamic.ResourceInterface {
		kind, _ := weftcrd.KindOf(k)
		return dyn.Resource(kind.Resource()).Namespace(ns)
	}
	create := func(k mesh.Kind, name string, spec map[string]any) error {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": weftcrd.Group + "/" + weftcrd.Version, "kind": string(k),
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec}}
		_, err := res(k).Create(ctx, obj, metav1.CreateOptions{})
		return err
	}
	// accepted renders an object's Accepted condition and its message.
	accepted := func(k mesh.Kind, name string) (string, string) {
		obj, err := res(k).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), ""
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		var s []string
		msg := ""
		for _, c := range conds {
			m := c.(map[string]any)
			s = append(s, fmt.Sprintf("%v=%v/%v@%v", m["type"], m["status"], m["reason"], m["observedGeneration"]))
			msg, _ = m["message"].(string)
		}
		return strings.Join(s, " "), msg
	}

	// A Sidecar declared by its object: accepted, and it routes.
	node := ns + "-web"
	if err := create(mesh.KindSidecar, node, map[string]any{"outbound": "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the Sidecar accepted", func() (string, bool) {
		s, _ := accepted(mesh.KindSidecar, node)
		return s, s == "Accepted=True/Accepted@1"
	})
	sc := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: node, URL: cp.URL()})
	gwEventually(t, "the sidecar routing to cart", func() (string, bool) {
		got := render(sample(sc, "cart."+ns, "/", 5))
		return got, got == "200 cart×5"
	})

	// The CRD's schema refuses a wrong type before weft sees it.
	if err := create(mesh.KindFilter, "typed", map[string]any{"module": map[string]any{"sha256": strings.Repeat("ab", 32)}, "pool_size": "four"}); err == nil || !strings.Contains(err.Error(), "spec.pool_size") {
		t.Fatalf("a Filter with a string pool_size: %v", err)
	}
	// A Filter whose module is not in the registry passes the schema; the
	// validator refuses it, naming the field, and it reaches no sidecar.
	if err := create(mesh.KindFilter, "authz", map[string]any{"module": map[string]any{"sha256": strings.Repeat("ab", 32)}, "apply": map[string]any{"all": true}}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the Filter refused", func() (string, bool) {
		s, msg := accepted(mesh.KindFilter, "authz")
		return s + " " + msg, s == "Accepted=False/Invalid@1" && strings.Contains(msg, "spec.module.sha256: ")
	})
	if _, ok := cp.Store().Get(mesh.Key{Kind: mesh.KindFilter, Namespace: ns, Name: "authz"}); ok {
		t.Fatal("the refused Filter is in the store")
	}
	for _, f := range cp.Store().Node(node).Config.Filters {
		if strings.HasPrefix(f.Name, "authz.") {
			t.Fatalf("the refused Filter reached the sidecar: %+v", f)
		}
	}

	// A valid Policy, then made invalid: refused, the valid one stays.
	if err := create(mesh.KindPolicy, "cart", map[string]any{"services": []any{"cart"}, "mtls": "permissive"}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the Policy accepted", func() (string, bool) {
		s, _ := accepted(mesh.KindPolicy, "cart")
		return s, s == "Accepted=True/Accepted@1"
	})
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := res(mesh.KindPolicy).Get(ctx, "cart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		_ = unstructured.SetNestedSlice(p.Object, []any{"cart", "nope"}, "spec", "services")
		_, err = res(mesh.KindPolicy).Update(ctx, p, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	gwEventually(t, "the Policy refused", func() (string, bool) {
		s, msg := accepted(mesh.KindPolicy, "cart")
		return s + " " + msg, s == "Accepted=False/Invalid@2" && strings.Contains(msg, `spec.services[1]: service "nope" does not exist`)
	})
	o, ok := cp.Store().Get(mesh.Key{Kind: mesh.KindPolicy, Namespace: ns, Name: "cart"})
	if !ok || strings.Join(o.Resource.Policy().Services, ",") != "cart" {
		t.Fatalf("the last good Policy is not in force: %+v", o.Resource)
	}
	if got := render(sample(sc, "cart."+ns, "/", 5)); got != "200 cart×5" {
		t.Fatalf("the sidecar after the refusal: %s", got)
	}
}
