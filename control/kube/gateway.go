package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
	gwlistersbeta "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1beta1"

	"github.com/weftmesh/weft/control/kube/gatewayapi"
	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
)

// GatewayAPI translates the Gateway API's HTTPRoutes and GRPCRoutes
// attached to Services (the GAMMA mesh profile) into the TrafficRules of
// those Services' mesh Services (package gatewayapi), and writes weft's
// part of each route's status. It watches only what the API server serves:
// without the Gateway API CRDs there are no routes (a warning says so).
// ReferenceGrants allow cross-namespace backendRefs; weft Filter objects
// (weftmesh.io) are what ExtensionRef filters name.
func GatewayAPI() Translator {
	g := &gatewayTranslator{}
	return Translator{Name: "gateway-api", Watch: g.watch, Translate: g.translate}
}

type gatewayTranslator struct {
	client  gwclient.Interface
	http    gwlisters.HTTPRouteLister
	grpc    gwlisters.GRPCRouteLister
	grants  gwlistersbeta.ReferenceGrantLister
	filters cache.GenericLister
}

// served reports whether the API server serves resource in group/version.
func served(in *Informers, gv, resource string) bool {
	list, err := in.Client.Discovery().ServerResourcesForGroupVersion(gv)
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true
		}
	}
	return false
}

func (g *gatewayTranslator) watch(in *Informers) error {
	client, err := gwclient.NewForConfig(in.Config)
	if err != nil {
		return fmt.Errorf("gateway API client: %w", err)
	}
	g.client = client
	f := gwinformers.NewSharedInformerFactory(client, 0)
	v1 := gwv1.GroupVersion.String()
	if served(in, v1, "httproutes") {
		inf := f.Gateway().V1().HTTPRoutes()
		g.http = inf.Lister()
		if err := in.Track(inf.Informer()); err != nil {
			return err
		}
	}
	if served(in, v1, "grpcroutes") {
		inf := f.Gateway().V1().GRPCRoutes()
		g.grpc = inf.Lister()
		if err := in.Track(inf.Informer()); err != nil {
			return err
		}
	}
	if served(in, "gateway.networking.k8s.io/v1beta1", "referencegrants") {
		inf := f.Gateway().V1beta1().ReferenceGrants()
		g.grants = inf.Lister()
		if err := in.Track(inf.Informer()); err != nil {
			return err
		}
	}
	in.OnStart(func(stop <-chan struct{}) { f.Start(stop) })
	filter, _ := weftcrd.KindOf(mesh.KindFilter)
	if served(in, weftcrd.Group+"/"+weftcrd.Version, filter.Plural) {
		dyn, err := dynamic.NewForConfig(in.Config)
		if err != nil {
			return err
		}
		df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
		inf := df.ForResource(filter.Resource())
		g.filters = inf.Lister()
		if err := in.Track(inf.Informer()); err != nil {
			return err
		}
		in.OnStart(func(stop <-chan struct{}) { df.Start(stop) })
	}
	return nil
}

func (g *gatewayTranslator) translate(c *Cache) (Output, error) {
	var out Output
	if g.http == nil && g.grpc == nil {
		out.Warnings = append(out.Warnings, "gateway-api: the API server serves no HTTPRoute nor GRPCRoute (gateway.networking.k8s.io/v1): install the Gateway API CRDs to route with them")
		return out, nil
	}
	in := gatewayapi.Input{Service: func(ns, name string) (gatewayapi.Service, bool) { return routeService(c, ns, name) }}
	var err error
	if g.http != nil {
		if in.HTTPRoutes, err = g.http.List(labels.Everything()); err != nil {
			return out, err
		}
	}
	if g.grpc != nil {
		if in.GRPCRoutes, err = g.grpc.List(labels.Everything()); err != nil {
			return out, err
		}
	}
	if g.grants != nil {
		if in.Grants, err = g.grants.List(labels.Everything()); err != nil {
			return out, err
		}
	}
	if g.filters != nil {
		in.Filter = func(ns, name string) bool {
			_, err := g.filters.ByNamespace(ns).Get(name)
			return err == nil
		}
	}
	res := gatewayapi.Translate(in)
	out.Resources = res.Rules
	for _, st := range res.Statuses {
		st := st
		out.Status = append(out.Status, StatusUpdate{
			Object:    st.Route.String(),
			Resources: st.Services,
			Digest:    statusDigest(st),
			Write: func(ctx context.Context, refused map[mesh.Key]error) error {
				return g.writeStatus(ctx, refuse(st, refused))
			},
		})
	}
	return out, nil
}

// routeService is what the routes need of a Kubernetes Service: its TCP
// ports and the mesh Service each is (as Discovery names them), "" for a
// port Discovery makes no mesh Service of (no usable endpoint, or a name
// taken).
func routeService(c *Cache, ns, name string) (gatewayapi.Service, bool) {
	svc, err := c.Services.Services(ns).Get(name)
	if err != nil {
		return gatewayapi.Service{}, false
	}
	var slices []*discoveryv1.EndpointSlice
	if svc.Spec.Type != corev1.ServiceTypeExternalName {
		slices, _ = c.EndpointSlices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
	}
	var out gatewayapi.Service
	for i, p := range tcpPorts(svc) {
		sp := gatewayapi.ServicePort{Name: p.Name, Port: p.Port, Mesh: portMeshName(svc, p, i, func(n string) bool {
			_, err := c.Services.Services(ns).Get(n)
			return err == nil
		})}
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			if svc.Spec.ExternalName == "" {
				sp.Mesh = ""
			}
		case len(endpointsOf(svc, p, slices)) == 0:
			sp.Mesh = ""
		}
		out.Ports = append(out.Ports, sp)
	}
	return out, true
}

// refuse turns the parents whose rule the store refused to Accepted=False.
func refuse(st gatewayapi.RouteStatus, refused map[mesh.Key]error) gatewayapi.RouteStatus {
	if len(refused) == 0 {
		return st
	}
	why := ""
	for _, k := range st.Services {
		if err, ok := refused[k]; ok {
			why = fmt.Sprintf("the weft control plane refused the routes of mesh Service %s/%s: %v", k.Namespace, k.Name, err)
			break
		}
	}
	if why == "" {
		return st
	}
	out := st
	out.Parents = nil
	for _, p := range st.Parents {
		p.Conditions = append([]metav1.Condition(nil), p.Conditions...)
		for i := range p.Conditions {
			if c := &p.Conditions[i]; c.Type == string(gwv1.RouteConditionAccepted) && c.Status == metav1.ConditionTrue {
				c.Status, c.Reason, c.Message = metav1.ConditionFalse, string(gwv1.RouteReasonUnsupportedValue), why
			}
		}
		out.Parents = append(out.Parents, p)
	}
	return out
}

func statusDigest(st gatewayapi.RouteStatus) string {
	b, _ := json.Marshal(st)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// writeStatus merges weft's entries into the route's status (as the
// informer holds it: the control plane may only list and watch routes) and
// writes it when it changed. A write that conflicts with a newer version
// fails; the informer brings that version and the next sync writes again.
func (g *gatewayTranslator) writeStatus(ctx context.Context, st gatewayapi.RouteStatus) error {
	now := metav1.Now()
	ns, name := st.Route.Namespace, st.Route.Name
	switch st.Route.Kind {
	case gatewayapi.KindHTTPRoute:
		cached, err := g.http.HTTPRoutes(ns).Get(name)
		if err != nil {
			return ignoreNotFound(err)
		}
		merged, write := gatewayapi.MergeStatus(cached.Status.Parents, st, now)
		if !write {
			return nil
		}
		cur := cached.DeepCopy()
		cur.Status.Parents = merged
		_, err = g.client.GatewayV1().HTTPRoutes(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return ignoreNotFound(err)
	case gatewayapi.KindGRPCRoute:
		cached, err := g.grpc.GRPCRoutes(ns).Get(name)
		if err != nil {
			return ignoreNotFound(err)
		}
		merged, write := gatewayapi.MergeStatus(cached.Status.Parents, st, now)
		if !write {
			return nil
		}
		cur := cached.DeepCopy()
		cur.Status.Parents = merged
		_, err = g.client.GatewayV1().GRPCRoutes(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return ignoreNotFound(err)
	}
	return nil
}
