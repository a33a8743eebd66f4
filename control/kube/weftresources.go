package kube

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
)

// The Accepted condition of a weft object, and its reasons.
const (
	ConditionAccepted = "Accepted"
	ReasonAccepted    = "Accepted"
	ReasonInvalid     = "Invalid"
)

// WeftResources translates weft's own custom resources (Filter, Policy and
// Sidecar of weftmesh.io/v1alpha1, those the API server serves) into the
// mesh resources of the same kind, namespace and name, decoded as strictly
// as `weft validate` decodes a file, and writes each object's Accepted
// condition: True, or False (reason Invalid) with the errors, each naming
// the field. An object the store refuses never reaches a sidecar; the
// version in force before (if any) keeps serving, as one that no longer
// decodes does.
func WeftResources() Translator {
	w := &weftTranslator{lastGood: map[mesh.Key]*mesh.Resource{}}
	return Translator{Name: "weft-crds", Watch: w.watch, Translate: w.translate}
}

type weftTranslator struct {
	client  dynamic.Interface
	listers map[mesh.Kind]cache.GenericLister

	mu sync.Mutex
	// lastGood is each object's last decoded resource, for one that no
	// longer decodes.
	lastGood map[mesh.Key]*mesh.Resource
}

func (w *weftTranslator) watch(in *Informers) error {
	client, err := dynamic.NewForConfig(in.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	w.client, w.listers = client, map[mesh.Kind]cache.GenericLister{}
	f := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
	for _, k := range weftcrd.Kinds {
		if !served(in, weftcrd.Group+"/"+weftcrd.Version, k.Plural) {
			continue
		}
		inf := f.ForResource(k.Resource())
		w.listers[k.Mesh] = inf.Lister()
		if err := in.Track(inf.Informer()); err != nil {
			return err
		}
	}
	in.OnStart(func(stop <-chan struct{}) { f.Start(stop) })
	return nil
}

func (w *weftTranslator) translate(*Cache) (Output, error) {
	var out Output
	if len(w.listers) == 0 {
		out.Warnings = append(out.Warnings, "weft-crds: the API server serves none of weft's CRDs (weftmesh.io/v1alpha1): apply deploy/kubernetes/crds to use them")
		return out, nil
	}
	seen := map[mesh.Key]bool{}
	for _, k := range weftcrd.Kinds {
		l := w.listers[k.Mesh]
		if l == nil {
			continue
		}
		objs, err := l.List(labels.Everything())
		if err != nil {
			return out, err
		}
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			key := mesh.Key{Kind: k.Mesh, Namespace: u.GetNamespace(), Name: u.GetName()}
			seen[key] = true
			spec, _, _ := unstructured.NestedMap(u.Object, "spec")
			r, derr := weftcrd.Decode(k, u.GetNamespace(), u.GetName(), spec)
			w.mu.Lock()
			if derr == nil {
				r.File = Origin(string(k.Mesh), u.GetNamespace(), u.GetName())
				w.lastGood[key] = r
			} else {
				r = w.lastGood[key]
			}
			w.mu.Unlock()
			if r != nil {
				out.Resources = append(out.Resources, r)
			}
			kind, obj := k, u
			out.Status = append(out.Status, StatusUpdate{
				Object:    Origin(string(k.Mesh), u.GetNamespace(), u.GetName()),
				Resources: []mesh.Key{key},
				Digest:    fmt.Sprintf("%d/%s/%v", u.GetGeneration(), u.GetUID(), derr),
				Write: func(ctx context.Context, refused map[mesh.Key]error) error {
					err := derr
					if err == nil {
						err = refused[key]
					}
					return w.writeStatus(ctx, kind, obj, acceptedCondition(key, obj.GetGeneration(), err, r != nil))
				},
			})
		}
	}
	w.mu.Lock()
	for k := range w.lastGood {
		if !seen[k] {
			delete(w.lastGood, k)
		}
	}
	w.mu.Unlock()
	return out, nil
}

// acceptedCondition is an object's Accepted condition: err is why it is
// refused (nil: accepted); kept says a version of it is still in force.
func acceptedCondition(key mesh.Key, gen int64, err error, kept bool) metav1.Condition {
	c := metav1.Condition{Type: ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonAccepted, ObservedGeneration: gen,
		Message: "valid, and in force on the sidecars it selects"}
	if err != nil {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonInvalid
		c.Message = weftcrd.Message(key, err)
		if kept {
			c.Message += "\nthe last accepted version, if any, keeps serving"
		}
	}
	return c
}

// writeStatus sets the object's Accepted condition (on the object as the
// informer holds it: the control plane may only list and watch) when it
// changed.
func (w *weftTranslator) writeStatus(ctx context.Context, k weftcrd.Kind, obj *unstructured.Unstructured, want metav1.Condition) error {
	rc := w.client.Resource(k.Resource()).Namespace(obj.GetNamespace())
	cached, err := w.listers[k.Mesh].ByNamespace(obj.GetNamespace()).Get(obj.GetName())
	if err != nil {
		return ignoreNotFound(err)
	}
	u, ok := cached.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	cur := u.DeepCopy()
	if cur.GetUID() != obj.GetUID() || cur.GetGeneration() > want.ObservedGeneration {
		return nil // replaced or changed since: the next sync writes its status
	}
	conds := conditionsOf(cur)
	if c := apimeta.FindStatusCondition(conds, ConditionAccepted); c != nil && c.Status == want.Status &&
		c.Reason == want.Reason && c.Message == want.Message && c.ObservedGeneration == want.ObservedGeneration {
		return nil
	}
	apimeta.SetStatusCondition(&conds, want)
	list := make([]any, 0, len(conds))
	for _, c := range conds {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return err
		}
		list = append(list, m)
	}
	if err := unstructured.SetNestedSlice(cur.Object, list, "status", "conditions"); err != nil {
		return err
	}
	if err := unstructured.SetNestedField(cur.Object, want.ObservedGeneration, "status", "observedGeneration"); err != nil {
		return err
	}
	_, err = rc.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return ignoreNotFound(err)
}

// conditionsOf reads status.conditions of a custom resource.
func conditionsOf(u *unstructured.Unstructured) []metav1.Condition {
	list, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []metav1.Condition
	for _, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		var c metav1.Condition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
