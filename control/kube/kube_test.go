package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/store"
)

// One API server for the package's tests; each test works in namespaces
// of its own.
func TestMain(m *testing.M) { kubetest.Main(m) }

const wait = 60 * time.Second // generous: CI is a loaded 2-core box

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{KubeSource: true, Compile: func(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) {
		return mesh.Compile(m, mesh.Options{})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func startSource(t testing.TB, cfg *rest.Config, st *store.Store, ts ...Translator) *Source {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	src, err := Start(ctx, Options{Config: cfg, Store: st, Translators: ts})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close(); cancel() })
	return src
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

type port struct {
	name   string
	port   int32
	target int32
}

func service(ns, name string, ports ...port) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: p.name, Port: p.port, Protocol: corev1.ProtocolTCP})
	}
	return s
}

type ep struct {
	ip                          string
	ready, serving, terminating *bool
	zone                        string
}

func slice(ns, name, svc string, ports []port, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4}
	for _, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(p.name), Port: ptr(p.target), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.zone != "" {
			x.Zone = ptr(e.zone)
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

// endpointsIn renders a mesh Service's instances ("ADDR@ZONE" sorted) or
// "absent".
func endpointsIn(st *store.Store, ns, name string) string {
	o, ok := st.Get(mesh.Key{Kind: mesh.KindService, Namespace: ns, Name: name})
	if !ok {
		return "absent"
	}
	var out []string
	for _, e := range o.Resource.Service().Endpoints {
		s := e.Address
		if e.Zone != "" {
			s += "@" + e.Zone
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func waitFor(t testing.TB, what string, cond func() (string, bool)) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var last string
	for {
		var ok bool
		if last, ok = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %s", what, last, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitEndpoints(t testing.TB, st *store.Store, ns, name, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("mesh Service %s/%s", ns, name), func() (string, bool) {
		got := endpointsIn(st, ns, name)
		return got, got == want
	})
}

func TestDiscovery(t *testing.T) {
	e := kubetest.Shared(t)
	ns := e.NewNamespace("disc")
	ctx := ctxT(t)
	c := e.Client
	ports := []port{{"http", 80, 8080}, {"grpc", 9090, 9091}}
	if _, err := c.CoreV1().Services(ns).Create(ctx, service(ns, "web", ports...), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Two slices of one service; a not-ready endpoint, a terminating one
	// still serving, one with no conditions (ready, as Kubernetes reads it).
	s1 := slice(ns, "web-a", "web", ports,
		ep{ip: "10.1.0.1", ready: ptr(true), zone: "z1"},
		ep{ip: "10.1.0.2", ready: ptr(false), serving: ptr(false)},
		ep{ip: "10.1.0.3", ready: ptr(false), serving: ptr(true), terminating: ptr(true)})
	s2 := slice(ns, "web-b", "web", ports, ep{ip: "10.1.0.4", zone: "z2"})
	var err error
	if s1, err = c.DiscoveryV1().EndpointSlices(ns).Create(ctx, s1, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err = c.DiscoveryV1().EndpointSlices(ns).Create(ctx, s2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	update := func() {
		t.Helper()
		if s1, err = c.DiscoveryV1().EndpointSlices(ns).Update(ctx, s1, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st := openStore(t)
	src := startSource(t, e.Config, st)
	// Start returns after the first sync: no waiting for these.
	if got := endpointsIn(st, ns, "web"); got != "10.1.0.1:8080@z1 10.1.0.4:8080@z2" {
		t.Fatalf("web after the first sync: %s", got)
	}
	// The second port is a mesh Service of its own, reached at NAME.NS:PORT.
	if got := endpointsIn(st, ns, "web-grpc"); got != "10.1.0.1:9091@z1 10.1.0.4:9091@z2" {
		t.Fatalf("web-grpc: %s", got)
	}
	o, _ := st.Get(mesh.Key{Kind: mesh.KindService, Namespace: ns, Name: "web-grpc"})
	if h := strings.Join(o.Resource.Service().Hosts, " "); h != "web."+ns+":9090 web."+ns+".svc:9090 web."+ns+".svc.cluster.local:9090" {
		t.Fatalf("web-grpc hosts: %s", h)
	}
	if o.Owner() != "kube:Service "+ns+"/web" {
		t.Fatalf("owner: %q", o.Owner())
	}

	// An endpoint that stops being ready leaves.
	s1.Endpoints[0].Conditions.Ready = ptr(false)
	update()
	waitEndpoints(t, st, ns, "web", "10.1.0.4:8080@z2")
	// With no ready endpoint left, the serving terminating one takes the
	// traffic (as kube-proxy does).
	if err := c.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "web-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, st, ns, "web", "10.1.0.3:8080")
	// None at all: the mesh Service goes until one is ready again.
	s1.Endpoints = s1.Endpoints[:2]
	update()
	waitEndpoints(t, st, ns, "web", "absent")
	s1.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr(true)}
	update()
	waitEndpoints(t, st, ns, "web", "10.1.0.2:8080")

	// The API cannot edit what the cluster owns.
	_, err = st.Apply(store.Change{Who: "t", Source: store.SourceAPI, Puts: []*mesh.Resource{{Kind: mesh.KindService, Namespace: ns, Name: "web",
		Spec: &mesh.ServiceSpec{Endpoints: []mesh.Endpoint{{Address: "10.9.9.9:1"}}}}}})
	if ce, ok := err.(*store.ConflictError); !ok || !strings.Contains(ce.Reason, "kube source") || !strings.Contains(ce.Reason, "Service "+ns+"/web") {
		t.Fatalf("an API write of a kube-owned service: %v", err)
	}

	// A deleted Service leaves the mesh.
	if err := c.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, st, ns, "web", "absent")
	waitEndpoints(t, st, ns, "web-grpc", "absent")
	if s := src.Status(); s.LastError != "" || s.Revision == 0 {
		t.Fatalf("status: %+v", s)
	}
}

func TestDiscoveryHeadlessExternalNameAndConflicts(t *testing.T) {
	e := kubetest.Shared(t)
	ns := e.NewNamespace("kinds")
	ctx := ctxT(t)
	c := e.Client
	st := openStore(t)
	// An API-owned service the cluster also names: the cluster's is
	// refused (and reported), the rest goes in.
	if _, err := st.Apply(store.Change{Who: "t", Source: store.SourceAPI, Puts: []*mesh.Resource{{Kind: mesh.KindService, Namespace: ns, Name: "taken",
		Spec: &mesh.ServiceSpec{Endpoints: []mesh.Endpoint{{Address: "10.9.9.9:1"}}}}}}); err != nil {
		t.Fatal(err)
	}
	headless := service(ns, "db", port{"", 5432, 5432})
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	ext := service(ns, "search", port{"https", 443, 443})
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "search.example.com"
	taken := service(ns, "taken", port{"", 80, 80})
	for _, s := range []*corev1.Service{headless, ext, taken} {
		if _, err := c.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*discoveryv1.EndpointSlice{
		slice(ns, "db-1", "db", []port{{"", 5432, 5432}}, ep{ip: "10.2.0.1"}, ep{ip: "10.2.0.2"}),
		slice(ns, "taken-1", "taken", []port{{"", 80, 80}}, ep{ip: "10.3.0.1"}),
	} {
		if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src := startSource(t, e.Config, st)
	waitEndpoints(t, st, ns, "db", "10.2.0.1:5432 10.2.0.2:5432")
	o, ok := st.Get(mesh.Key{Kind: mesh.KindService, Namespace: ns, Name: "search"})
	if !ok || o.Resource.Service().DNS == nil || *o.Resource.Service().DNS != (mesh.DNS{Name: "search.example.com", Port: 443}) {
		t.Fatalf("ExternalName service: %+v", o.Resource)
	}
	if got := endpointsIn(st, ns, "taken"); got != "10.9.9.9:1" {
		t.Fatalf("the API's service was replaced: %s", got)
	}
	waitFor(t, "the refusal in status", func() (string, bool) {
		s := src.Status()
		return strings.Join(s.Refused, "; "), len(s.Refused) == 1 && strings.Contains(s.Refused[0], "Service "+ns+"/taken") && strings.Contains(s.Refused[0], "owned by the api source")
	})
}
