package kube

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/control/internal/kubetest"
)

// The caBundle is written to every webhook that lacks it, not written
// again while it is current, and rewritten when the roots change (a CA
// rotation); KeepWebhookCABundle retries until the configuration exists.
func TestWebhookCABundle(t *testing.T) {
	e := kubetest.Shared(t)
	ctx := ctxT(t)
	api := e.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	name := "cabundle-" + e.NewNamespace("cabundle")
	url := "https://127.0.0.1:1/inject"
	none, fail := admregv1.SideEffectClassNone, admregv1.Fail
	hook := func(n string) admregv1.MutatingWebhook {
		return admregv1.MutatingWebhook{Name: n, AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, FailurePolicy: &fail,
			ClientConfig: admregv1.WebhookClientConfig{URL: &url},
			// No namespace has this label: nothing is sent to it.
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"weftmesh.io/never": "x"}}}
	}
	bundleOf := func() []string {
		t.Helper()
		got, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range got.Webhooks {
			out = append(out, string(w.ClientConfig.CABundle))
		}
		return out
	}

	// Not there yet: the keeper retries, and writes once it is.
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		KeepWebhookCABundle(kctx, e.Client, name, func() []byte { return []byte("root-a") }, 20*time.Millisecond, zap.NewNop())
	}()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := api.Create(ctx, &admregv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admregv1.MutatingWebhook{hook("a.weftmesh.io"), hook("b.weftmesh.io")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	waitFor(t, "the keeper writing root-a", func() (string, bool) {
		b := bundleOf()
		return stringsOf(b), len(b) == 2 && b[0] == "root-a" && b[1] == "root-a"
	})
	cancel()
	<-done

	if n, err := syncCABundle(ctx, e.Client, name, []byte("root-a")); n != 0 || err != nil {
		t.Fatalf("a current caBundle was written again: %d %v", n, err)
	}
	if n, err := syncCABundle(ctx, e.Client, name, []byte("root-a\nroot-b")); n != 2 || err != nil {
		t.Fatalf("new roots: %d %v", n, err)
	}
	if b := bundleOf(); b[0] != "root-a\nroot-b" || b[1] != "root-a\nroot-b" {
		t.Fatalf("after the rotation: %q", b)
	}
	if _, err := syncCABundle(ctx, e.Client, "no-such-"+name, []byte("x")); err == nil {
		t.Fatal("a missing configuration: no error")
	}
}

func stringsOf(b []string) string {
	s := ""
	for _, x := range b {
		s += "[" + x + "]"
	}
	return s
}
