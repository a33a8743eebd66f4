package kube_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/weftmesh/weft/control/internal/kubetest"
)

const manifests = "../../deploy/kubernetes"

// strict decodes Kubernetes' own types, refusing unknown fields.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)

// manifestObjects decodes every document of the manifests (as Kubernetes
// objects of known types, strictly: an unknown field fails).
func manifestObjects(t testing.TB, files ...string) []*unstructured.Unstructured {
	t.Helper()
	if len(files) == 0 {
		var err error
		if files, err = filepath.Glob(filepath.Join(manifests, "*.yaml")); err != nil || len(files) == 0 {
			t.Fatalf("no manifests in %s: %v", manifests, err)
		}
	} else {
		for i, f := range files {
			files[i] = filepath.Join(manifests, f)
		}
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for i := 0; ; i++ {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			js, _ := u.MarshalJSON()
			if _, _, err := strict.UniversalDeserializer().Decode(js, nil, nil); err != nil {
				t.Fatalf("%s: document %d (%s %s): %v", f, i, u.GetKind(), u.GetName(), err)
			}
			out = append(out, &u)
		}
	}
	return out
}

// apply creates objs with the admin (dryRun: server-side dry run only);
// an object that exists is left as it is.
func apply(t testing.TB, cfg *rest.Config, dryRun bool, objs ...*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn := dynamic.NewForConfigOrDie(cfg)
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Create(ctx, o, opts); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s/%s (dry run %v): %v", gvk.Kind, o.GetNamespace(), o.GetName(), dryRun, err)
		}
	}
}

var rbacOnce sync.Map // *kubetest.Env URL → done

// controlPlaneConfig installs namespace.yaml and rbac.yaml for real and
// returns a client configuration of their weft-control service account:
// the tests' control planes run with exactly the manifests' RBAC.
func controlPlaneConfig(t testing.TB, e *kubetest.Env) *rest.Config {
	t.Helper()
	if _, done := rbacOnce.Load(e.URL); !done {
		apply(t, e.Config, false, manifestObjects(t, "namespace.yaml", "rbac.yaml")...)
		rbacOnce.Store(e.URL, true)
	}
	return e.ServiceAccountConfig("weft-system", "weft-control")
}

// Every manifest decodes as the Kubernetes type it names, and the API
// server accepts all of them (server-side dry run; the namespace and RBAC
// for real, first, as an install would).
func TestManifests(t *testing.T) {
	objs := manifestObjects(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ConfigMap"} {
		if kinds[k] == 0 {
			t.Errorf("the manifests have no %s", k)
		}
	}
	e := kubetest.Shared(t)
	sa := kubernetes.NewForConfigOrDie(controlPlaneConfig(t, e))
	// Least privilege: the control plane reads no secrets and writes no
	// Services or EndpointSlices.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sa.CoreV1().Secrets("weft-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane's service account listing secrets: %v, want forbidden", err)
	}
	if err := sa.CoreV1().Services("weft-system").Delete(ctx, "weft-control", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane's service account deleting a Service: %v, want forbidden", err)
	}
	if _, err := sa.CoreV1().Pods("weft-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane's service account listing pods (it only gets the one a token names): %v, want forbidden", err)
	}
	// Its injection webhook's configuration only: no other, no listing.
	if _, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane's service account listing webhook configurations: %v, want forbidden", err)
	}
	if _, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "another-webhook", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane's service account reading another webhook configuration: %v, want forbidden", err)
	}
	// The example's namespace must exist for a dry run of its objects.
	e.EnsureNamespace("weft-demo")
	apply(t, e.Config, true, objs...)
}
