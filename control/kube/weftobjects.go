package kube

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
)

// Reasons of a weft object's Accepted condition.
const (
	ReasonAccepted = "Accepted"
	ReasonInvalid  = "Invalid"
)

// ConditionAccepted is the condition a weft object's status carries.
const ConditionAccepted = "Accepted"

// weftObjects watches weft's own custom resources (Filter, Policy,
// Sidecar of weftmesh.io, those the API server serves) and writes their
// Accepted condition.
type weftObjects struct {
	log     *zap.Logger
	client  dynamic.Interface
	factory dynamicinformer.DynamicSharedInformerFactory
	listers map[mesh.Kind]cache.GenericLister
	synced  []cache.InformerSynced
}

func newWeftObjects(cfg *rest.Config, log *zap.Logger, resync time.Duration, onChange func()) (*weftObjects, error) {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	w := &weftObjects{log: log, client: client, factory: dynamicinformer.NewDynamicSharedInformerFactory(client, resync),
		listers: map[mesh.Kind]cache.GenericLister{}}
	served := map[string]bool{}
	if list, err := dc.ServerResourcesForGroupVersion(weftcrd.Group + "/" + weftcrd.Version); err == nil {
		for _, r := range list.APIResources {
			served[r.Name] = true
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	for _, k := range weftcrd.Kinds {
		if !served[k.Plural] {
			log.Warn("the API server does not serve weft's CRD: apply deploy/kubernetes/crds to use it", zap.String("resource", k.Plural+"."+weftcrd.Group))
			continue
		}
		inf := w.factory.ForResource(k.Resource())
		if _, err := inf.Informer().AddEventHandler(h); err != nil {
			return nil, err
		}
		w.listers[k.Mesh] = inf.Lister()
		w.synced = append(w.synced, inf.Informer().HasSynced)
	}
	return w, nil
}

func (w *weftObjects) start(ctx context.Context) { w.factory.Start(ctx.Done()) }

func (w *weftObjects) stop() { w.factory.Shutdown() }

// weftObject is one custom resource as read from the cache.
type weftObject struct {
	kind weftcrd.Kind
	obj  *unstructured.Unstructured
}

func (o weftObject) key() mesh.Key {
	return mesh.Key{Kind: o.kind.Mesh, Namespace: o.obj.GetNamespace(), Name: o.obj.GetName()}
}

// list returns every weft object in the caches, in key order.
func (w *weftObjects) list() []weftObject {
	var out []weftObject
	for _, k := range weftcrd.Kinds {
		l := w.listers[k.Mesh]
		if l == nil {
			continue
		}
		objs, _ := l.List(everything)
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				out = append(out, weftObject{kind: k, obj: u})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key().Less(out[j].key()) })
	return out
}

// verdict is what the control plane made of one weft object.
type verdict struct {
	obj weftObject
	err error // nil: accepted
	// kept is set when the object is refused and its last accepted
	// version (the store's) keeps serving.
	kept bool
}

// admission is what admit decided.
type admission struct {
	// Puts are the resources the weft objects and routes contribute.
	Puts []*mesh.Resource
	// Verdicts are the weft objects', in their order.
	Verdicts []verdict
	// RefusedRules are the route rules left out (TrafficRule key → why).
	RefusedRules map[mesh.Key]string
}

// admit decides which resources the weft objects and the rules translated
// from routes contribute to the mesh, so that one bad object never holds
// up the others (nor the Services' endpoints): a valid object as it is; an
// invalid one (bad decoding, or a problem the whole-mesh validation or a
// sidecar's compiled config finds in it) not at all, except that its last
// accepted version, stored(key), keeps serving; a rule that does not fit
// the mesh (another source already routes that Service) is left out.
// others are the mesh's other resources (other sources, the cluster's
// Services).
func admit(objs []weftObject, rules []*mesh.Resource, others []*mesh.Resource, stored func(mesh.Key) *mesh.Resource, o mesh.Options) admission {
	verdicts := make([]verdict, len(objs))
	decoded := make([]*mesh.Resource, len(objs))
	for i, ob := range objs {
		verdicts[i].obj = ob
		spec, _, _ := unstructured.NestedMap(ob.obj.Object, "spec")
		decoded[i], verdicts[i].err = weftcrd.Decode(ob.kind, ob.obj.GetNamespace(), ob.obj.GetName(), spec)
	}
	refused := map[mesh.Key]string{}
	lastGood := func(k mesh.Key) *mesh.Resource {
		if stored == nil {
			return nil
		}
		return stored(k)
	}
	candidate := func() []*mesh.Resource {
		rs := append([]*mesh.Resource(nil), others...)
		for i, v := range verdicts {
			switch {
			case v.err == nil:
				rs = append(rs, decoded[i])
			case lastGood(v.obj.key()) != nil:
				rs = append(rs, lastGood(v.obj.key()))
			}
		}
		for _, r := range rules {
			if _, no := refused[r.Key()]; !no {
				rs = append(rs, r)
			}
		}
		return rs
	}
	// Most changes are valid: one compile says so. Otherwise each object
	// and rule is checked against the rest, and refused ones leave the
	// candidate, until it compiles or none is to blame.
	for round := 0; round < 3; round++ {
		rs := candidate()
		if _, err := mesh.Compile(mesh.New(rs), o); err == nil {
			break
		}
		m := mesh.New(rs)
		blamed := false
		for i := range verdicts {
			if verdicts[i].err != nil {
				continue
			}
			if err := weftcrd.Check(decoded[i], m, o); err != nil {
				verdicts[i].err = err
				blamed = true
			}
		}
		for _, r := range rules {
			if _, no := refused[r.Key()]; no {
				continue
			}
			if err := weftcrd.Check(r, m, o); err != nil {
				refused[r.Key()] = weftcrd.Message(r.Key(), err)
				blamed = true
			}
		}
		if !blamed {
			break // not the weft objects' nor the routes' doing: the store reports it
		}
	}
	a := admission{Verdicts: verdicts, RefusedRules: refused}
	for i, v := range verdicts {
		switch {
		case v.err == nil:
			a.Puts = append(a.Puts, decoded[i])
		case lastGood(v.obj.key()) != nil:
			verdicts[i].kept = true
			a.Puts = append(a.Puts, lastGood(v.obj.key()))
		}
	}
	for _, r := range rules {
		if _, no := refused[r.Key()]; !no {
			a.Puts = append(a.Puts, r)
		}
	}
	return a
}

// condition is an object's Accepted condition for its verdict.
func (v verdict) condition() metav1.Condition {
	c := metav1.Condition{Type: ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonAccepted,
		ObservedGeneration: v.obj.obj.GetGeneration(), Message: "valid and in force on the sidecars it selects"}
	if v.err != nil {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalid
		c.Message = weftcrd.Message(v.obj.key(), v.err)
		if v.kept {
			c.Message += "\nthe last accepted version keeps serving"
		} else {
			c.Message += "\nthe object is not in force"
		}
	}
	return c
}

// writeStatus sets each object's Accepted condition where it changed.
func (w *weftObjects) writeStatus(ctx context.Context, verdicts []verdict) {
	for _, v := range verdicts {
		u := v.obj.obj
		want := v.condition()
		conds := conditionsOf(u)
		if cur := apimeta.FindStatusCondition(conds, ConditionAccepted); cur != nil && cur.Status == want.Status &&
			cur.Reason == want.Reason && cur.Message == want.Message && cur.ObservedGeneration == want.ObservedGeneration {
			continue
		}
		apimeta.SetStatusCondition(&conds, want)
		next := u.DeepCopy()
		list := make([]any, 0, len(conds))
		for _, c := range conds {
			m, err := runtimeToMap(c)
			if err != nil {
				continue
			}
			list = append(list, m)
		}
		_ = unstructured.SetNestedSlice(next.Object, list, "status", "conditions")
		_ = unstructured.SetNestedField(next.Object, u.GetGeneration(), "status", "observedGeneration")
		_, err := w.client.Resource(v.obj.kind.Resource()).Namespace(u.GetNamespace()).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			w.log.Warn("writing status", zap.String("object", v.obj.key().String()), zap.Error(err))
		}
	}
}
