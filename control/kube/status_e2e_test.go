package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/kube/gatewayapi"
	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
)

// weftCRDFiles are deploy/kubernetes/crds/*.yaml.
func weftCRDFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "crds", "weftmesh.io_*.yaml"))
	if err != nil || len(files) != len(weftcrd.Kinds) {
		t.Fatalf("weft CRDs: %v %v", files, err)
	}
	return files
}

func ptrTo[T any](v T) *T { return &v }

// conds renders conditions as "Type=Status/Reason@gen", sorted.
func conds(cs []metav1.Condition) string {
	var s []string
	for _, c := range cs {
		s = append(s, fmt.Sprintf("%s=%s/%s@%d", c.Type, c.Status, c.Reason, c.ObservedGeneration))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// eventually polls cond until it holds, for up to 60s (a loaded machine).
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not after 60s (last: %s)", what, last)
}

// The route watcher's statuses and the weft objects' conditions are
// accepted by the real API server's CRD validation, written only when they
// change, and say exactly what weft made of each object.
func testStatusWriteBack(t *testing.T, env *kubetest.Env) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := zaptest.NewLogger(t)
	ns := "status"
	env.EnsureNamespace(ns)
	for _, name := range []string{"reviews", "reviews-v1"} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
		if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gw := gwclient.NewForConfigOrDie(env.Config)
	route := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{
				{Group: ptrTo(gwv1.Group("")), Kind: ptrTo(gwv1.Kind("Service")), Name: "reviews", Port: ptrTo(gwv1.PortNumber(9080))},
				{Name: "some-gateway"}, // not weft's: no status entry
			}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{
				{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "reviews-v1", Port: ptrTo(gwv1.PortNumber(9080))}}},
				{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "reviews-v3", Port: ptrTo(gwv1.PortNumber(9080))}}},
			}}},
		}}
	if _, err := gw.GatewayV1().HTTPRoutes(ns).Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	changed := make(chan struct{}, 1)
	onChange := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	rw, err := newRoutes(env.Config, log, 0, onChange)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.stop()
	defer cancel()
	rw.start(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), rw.synced...) {
		t.Fatal("route informers did not sync")
	}
	services := func(ns, name string) (gatewayapi.Service, bool) {
		s, err := env.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return gatewayapi.Service{}, false
		}
		var out gatewayapi.Service
		for _, p := range s.Spec.Ports {
			out.Ports = append(out.Ports, gatewayapi.ServicePort{Name: p.Name, Port: p.Port})
		}
		return out, true
	}
	sync := func() { rw.writeStatus(ctx, rw.translate(services, nil)) }
	routeStatus := func() (string, *gwv1.HTTPRoute) {
		r, err := gw.GatewayV1().HTTPRoutes(ns).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			return err.Error(), nil
		}
		var s []string
		for _, p := range r.Status.Parents {
			s = append(s, fmt.Sprintf("%s %s: %s", p.ControllerName, p.ParentRef.Name, conds(p.Conditions)))
		}
		return strings.Join(s, "; "), r
	}
	sync()
	want := "weftmesh.io/control reviews: Accepted=True/Accepted@1 ResolvedRefs=False/BackendNotFound@1"
	var first *gwv1.HTTPRoute
	eventually(t, "the route's status", func() (bool, string) {
		sync()
		s, r := routeStatus()
		first = r
		return s == want, s
	})
	msg := first.Status.Parents[0].Conditions[1].Message
	if !strings.Contains(msg, "backendRefs[1]: Service status/reviews-v3 does not exist") {
		t.Fatalf("ResolvedRefs message: %q", msg)
	}
	// Nothing changed: nothing is written.
	sync()
	if _, again := routeStatus(); again.ResourceVersion != first.ResourceVersion {
		t.Fatalf("an unchanged status was written again (resourceVersion %s → %s)", first.ResourceVersion, again.ResourceVersion)
	}
	// The missing backend appears, the route changes generation.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-v3"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
	if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first.Spec.Rules[0].Timeouts = &gwv1.HTTPRouteTimeouts{Request: ptrTo(gwv1.Duration("5s"))}
	if _, err := gw.GatewayV1().HTTPRoutes(ns).Update(ctx, first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want = "weftmesh.io/control reviews: Accepted=True/Accepted@2 ResolvedRefs=True/ResolvedRefs@2"
	eventually(t, "the route's status after the fix", func() (bool, string) {
		sync()
		s, _ := routeStatus()
		return s == want, s
	})

	// Weft's objects: a valid Filter is Accepted, an invalid one is
	// refused naming the field (the CRD schema let it through: the value
	// has the right type, the validator knows the allowed ones).
	dyn := dynamic.NewForConfigOrDie(env.Config)
	filter, _ := weftcrd.KindOf(mesh.KindFilter)
	digest := strings.Repeat("ab", 32)
	mk := func(name string, spec map[string]any) {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": weftcrd.Group + "/" + weftcrd.Version, "kind": "Filter",
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec}}
		if _, err := dyn.Resource(filter.Resource()).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating Filter %s: %v", name, err)
		}
	}
	mk("good", map[string]any{"module": map[string]any{"sha256": digest}})
	mk("bad", map[string]any{"module": map[string]any{"sha256": digest}, "failure_policy": "sometimes"})
	// The CRD's schema refuses a wrong type before weft sees it.
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": weftcrd.Group + "/" + weftcrd.Version, "kind": "Filter",
		"metadata": map[string]any{"name": "typed", "namespace": ns}, "spec": map[string]any{"module": map[string]any{"sha256": digest}, "pool_size": "four"}}}
	if _, err := dyn.Resource(filter.Resource()).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "spec.pool_size") {
		t.Fatalf("a string pool_size: %v", err)
	}
	wo, err := newWeftObjects(env.Config, log, 0, onChange)
	if err != nil {
		t.Fatal(err)
	}
	defer wo.stop()
	wo.start(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), wo.synced...) {
		t.Fatal("weft informers did not sync")
	}
	o := mesh.Options{HasModule: func(d string) bool { return d == digest }, ModuleURL: func(d string) string { return "http://c/" + d }}
	eventually(t, "the Filters' conditions", func() (bool, string) {
		wo.writeStatus(ctx, admit(wo.list(), nil, nil, nil, o).Verdicts)
		var got []string
		for _, name := range []string{"bad", "good"} {
			x, err := dyn.Resource(filter.Resource()).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			c := conditionsOf(x)
			got = append(got, name+": "+conds(c))
			if name == "bad" && len(c) == 1 && !strings.Contains(c[0].Message, "spec.failure_policy: ") {
				return false, "message " + c[0].Message
			}
		}
		s := strings.Join(got, "; ")
		return s == "bad: Accepted=False/Invalid@1; good: Accepted=True/Accepted@1", s
	})
}

// TestStatusWriteBack runs on its own API server until the kube source's
// shared one is merged in.
func TestStatusWriteBack(t *testing.T) {
	env := kubetest.Start(t)
	env.ApplyCRDs(kubetest.GatewayAPICRDs(t, "standard")...)
	env.ApplyCRDs(weftCRDFiles(t)...)
	testStatusWriteBack(t, env)
}
