package kubetest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// The harness brings up a real API server that stores what it is given,
// serves the Gateway API CRDs, and enforces RBAC on service accounts.
func TestAPIServer(t *testing.T) {
	e := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.EnsureNamespace("shop")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := e.Client.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Client.CoreV1().Services("shop").Get(ctx, "cart", metav1.GetOptions{})
	if err != nil || got.Spec.ClusterIP == "" {
		t.Fatalf("service not stored with a cluster IP: %+v %v", got, err)
	}

	e.ApplyCRDs(GatewayAPICRDs(t, "standard")...)
	dyn := dynamic.NewForConfigOrDie(e.Config)
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "cart", "namespace": "shop"},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "cart"}},
			"rules":      []any{map[string]any{"backendRefs": []any{map[string]any{"name": "cart", "port": int64(80)}}}},
		},
	}}
	if _, err := dyn.Resource(gvr).Namespace("shop").Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatalf("HTTPRoute: %v", err)
	}
	// The CRD's validation is real: a weight below zero is refused.
	bad := route.DeepCopy()
	bad.SetName("bad")
	_ = unstructured.SetNestedSlice(bad.Object, []any{map[string]any{"backendRefs": []any{map[string]any{"name": "cart", "port": int64(80), "weight": int64(-1)}}}}, "spec", "rules")
	if _, err := dyn.Resource(gvr).Namespace("shop").Create(ctx, bad, metav1.CreateOptions{}); err == nil {
		t.Fatal("an HTTPRoute with weight -1 was accepted")
	}

	// A service account with no RBAC can read nothing.
	sa := kubernetes.NewForConfigOrDie(e.ServiceAccountConfig("shop", "nobody"))
	if _, err := sa.CoreV1().Services("shop").List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("a service account with no role listed services")
	}
}
