package kube

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
	gwlistersbeta "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1beta1"

	"github.com/weftmesh/weft/control/kube/gatewayapi"
	"github.com/weftmesh/weft/control/mesh"
)

// routes watches the Gateway API's HTTPRoutes, GRPCRoutes and
// ReferenceGrants (those the cluster serves: without the Gateway API CRDs
// there are no routes), translates them with package gatewayapi and writes
// weft's part of their status.
type routes struct {
	log     *zap.Logger
	client  gwclient.Interface
	factory gwinformers.SharedInformerFactory
	http    gwlisters.HTTPRouteLister
	grpc    gwlisters.GRPCRouteLister
	grants  gwlistersbeta.ReferenceGrantLister
	synced  []cache.InformerSynced
}

// newRoutes sets up informers for the route kinds the API server serves;
// onChange is called (from informer goroutines) after every event.
func newRoutes(cfg *rest.Config, log *zap.Logger, resync time.Duration, onChange func()) (*routes, error) {
	client, err := gwclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway API client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	r := &routes{log: log, client: client, factory: gwinformers.NewSharedInformerFactory(client, resync)}
	served := func(gv, resource string) bool {
		list, err := dc.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return false
		}
		for _, x := range list.APIResources {
			if x.Name == resource {
				return true
			}
		}
		return false
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	add := func(inf cache.SharedIndexInformer) {
		if _, err := inf.AddEventHandler(h); err == nil {
			r.synced = append(r.synced, inf.HasSynced)
		}
	}
	v1 := gwv1.GroupVersion.String()
	if served(v1, "httproutes") {
		inf := r.factory.Gateway().V1().HTTPRoutes()
		r.http = inf.Lister()
		add(inf.Informer())
	} else {
		log.Warn("the API server does not serve HTTPRoutes (gateway.networking.k8s.io/v1): install the Gateway API CRDs to route with them")
	}
	if served(v1, "grpcroutes") {
		inf := r.factory.Gateway().V1().GRPCRoutes()
		r.grpc = inf.Lister()
		add(inf.Informer())
	}
	if served("gateway.networking.k8s.io/v1beta1", "referencegrants") {
		inf := r.factory.Gateway().V1beta1().ReferenceGrants()
		r.grants = inf.Lister()
		add(inf.Informer())
	}
	return r, nil
}

func (r *routes) start(ctx context.Context) { r.factory.Start(ctx.Done()) }

func (r *routes) stop() { r.factory.Shutdown() }

// translate reads every route from the informers' caches.
func (r *routes) translate(service func(ns, name string) (gatewayapi.Service, bool), filter func(ns, name string) bool) gatewayapi.Result {
	in := gatewayapi.Input{Service: service, Filter: filter}
	if r.http != nil {
		in.HTTPRoutes, _ = r.http.List(labels.Everything())
	}
	if r.grpc != nil {
		in.GRPCRoutes, _ = r.grpc.List(labels.Everything())
	}
	if r.grants != nil {
		in.Grants, _ = r.grants.List(labels.Everything())
	}
	return gatewayapi.Translate(in)
}

// refuse marks the routes whose rule for a Service the store refused
// (refused: TrafficRule key → why): that parent's Accepted turns False.
func refuse(res *gatewayapi.Result, refused map[mesh.Key]string) {
	for i := range res.Statuses {
		st := &res.Statuses[i]
		for _, k := range st.Services {
			why, ok := refused[k]
			if !ok {
				continue
			}
			for p := range st.Parents {
				ns := st.Route.Namespace
				if n := st.Parents[p].ParentRef.Namespace; n != nil && *n != "" {
					ns = string(*n)
				}
				if ns != k.Namespace || string(st.Parents[p].ParentRef.Name) != k.Name {
					continue
				}
				for c := range st.Parents[p].Conditions {
					cd := &st.Parents[p].Conditions[c]
					if cd.Type == string(gwv1.RouteConditionAccepted) {
						cd.Status, cd.Reason = metav1.ConditionFalse, string(gwv1.RouteReasonUnsupportedValue)
						cd.Message = "the weft control plane refused the Service's routes: " + why
					}
				}
			}
		}
	}
}

// writeStatus writes each route's status where weft's part changed.
// Conflicts (the route changed meanwhile) are left to the next event.
func (r *routes) writeStatus(ctx context.Context, res gatewayapi.Result) {
	now := metav1.Now()
	for _, st := range res.Statuses {
		var err error
		switch st.Route.Kind {
		case gatewayapi.KindHTTPRoute:
			var cur *gwv1.HTTPRoute
			if cur, err = r.http.HTTPRoutes(st.Route.Namespace).Get(st.Route.Name); err != nil {
				continue
			}
			merged, write := gatewayapi.MergeStatus(cur.Status.Parents, st, now)
			if !write {
				continue
			}
			next := cur.DeepCopy()
			next.Status.Parents = merged
			_, err = r.client.GatewayV1().HTTPRoutes(st.Route.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		case gatewayapi.KindGRPCRoute:
			var cur *gwv1.GRPCRoute
			if cur, err = r.grpc.GRPCRoutes(st.Route.Namespace).Get(st.Route.Name); err != nil {
				continue
			}
			merged, write := gatewayapi.MergeStatus(cur.Status.Parents, st, now)
			if !write {
				continue
			}
			next := cur.DeepCopy()
			next.Status.Parents = merged
			_, err = r.client.GatewayV1().GRPCRoutes(st.Route.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		}
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			r.log.Warn("writing route status", zap.String("route", st.Route.String()), zap.Error(err))
		}
	}
}
