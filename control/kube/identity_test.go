package kube

import (
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/control/internal/kubetest"
)

// The reviewer accepts a projected token for its audience, and refuses
// one for another audience, an expired one, one of a service account that
// is gone, one of a deleted pod; it reads the pod a token is bound to.
func TestReviewer(t *testing.T) {
	e := kubetest.Shared(t)
	ns := e.NewNamespace("review")
	ctx := ctxT(t)
	r := NewReviewer(e.Client, "")

	w, err := r.Review(ctx, e.ServiceAccountToken(ns, "cart", "weft"))
	if err != nil || w != (Workload{Namespace: ns, ServiceAccount: "cart"}) {
		t.Fatalf("a token for audience weft: %+v %v", w, err)
	}
	if w.SpiffeID("td.local") != "spiffe://td.local/ns/"+ns+"/sa/cart" {
		t.Fatalf("spiffe id: %s", w.SpiffeID("td.local"))
	}
	refused := func(what, tok, want string) {
		t.Helper()
		_, err := r.Review(ctx, tok)
		if !IsReviewError(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: want a refusal containing %q, got %v", what, want, err)
		}
	}
	refused("another audience", e.ServiceAccountToken(ns, "cart", "vault"), "audience weft")
	refused("the API server's own audience", e.ServiceAccountToken(ns, "cart"), "audience weft")
	refused("not a token", "not-a-jwt", "audience weft")

	sa, err := e.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "cart", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(exp time.Time, saName string, uid string) map[string]any {
		return map[string]any{"sub": "system:serviceaccount:" + ns + ":" + saName, "aud": []string{"weft"}, "exp": exp.Unix(),
			"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": saName, "uid": uid}}}
	}
	// The signing is the API server's: a valid token signed here passes.
	if _, err := r.Review(ctx, e.SignServiceAccountToken(claims(time.Now().Add(time.Hour), "cart", string(sa.UID)))); err != nil {
		t.Fatalf("a token signed with the server's key: %v", err)
	}
	refused("expired", e.SignServiceAccountToken(claims(time.Now().Add(-time.Minute), "cart", string(sa.UID))), "expired")
	refused("an unknown service account", e.SignServiceAccountToken(claims(time.Now().Add(time.Hour), "ghost", "5d3e6d2c-0000-4000-8000-000000000000")), "ghost")

	// A token of a service account deleted since is refused.
	gone := e.ServiceAccountToken(ns, "gone", "weft")
	if err := e.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server checks the account in its informer's cache: the
	// deletion reaches it shortly after the DELETE answers.
	waitFor(t, "a deleted service account's token", func() (string, bool) {
		_, err := r.Review(ctx, gone)
		return errString(err), IsReviewError(err)
	})

	// A token bound to a pod names it, and dies with it.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart-1"},
		Spec: corev1.PodSpec{ServiceAccountName: "cart", Containers: []corev1.Container{{Name: "app", Image: "example.com/cart:1"}}}}
	if pod, err = e.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := e.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "cart", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{"weft"}, ExpirationSeconds: &exp,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err = r.Review(ctx, tr.Status.Token)
	if err != nil || w.Pod != "cart-1" || w.PodUID != string(pod.UID) {
		t.Fatalf("a pod-bound token: %+v %v", w, err)
	}
	if err := e.Client.CoreV1().Pods(ns).Delete(ctx, "cart-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted pod's token", func() (string, bool) {
		_, err := r.Review(ctx, tr.Status.Token)
		return errString(err), IsReviewError(err)
	})
}

func errString(err error) string {
	if err == nil {
		return "accepted"
	}
	return err.Error()
}
