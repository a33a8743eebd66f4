package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// KeepWebhookCABundle keeps the caBundle of every webhook of the
// MutatingWebhookConfiguration name equal to bundle() (the control plane's
// CA roots, PEM), as istiod does for its injector: at once, then every
// interval, so that the configuration may be applied with an empty
// caBundle and a CA rotation's new root reaches the API server before it
// signs the serving certificate. It needs get and patch on that one
// configuration; failures (the configuration not there yet, forbidden) are
// logged and retried until ctx ends.
func KeepWebhookCABundle(ctx context.Context, client kubernetes.Interface, name string, bundle func() []byte, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		n, err := syncCABundle(ctx, client, name, bundle())
		switch {
		case err != nil && err.Error() != lastErr && ctx.Err() == nil:
			log.Warn("keeping the injection webhook's caBundle", zap.String("mutatingwebhookconfiguration", name), zap.Error(err))
		case err == nil && n > 0:
			log.Info("wrote the injection webhook's caBundle", zap.String("mutatingwebhookconfiguration", name), zap.Int("webhooks", n))
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// syncCABundle patches the webhooks whose caBundle differs and returns
// how many.
func syncCABundle(ctx context.Context, client kubernetes.Interface, name string, pem []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", name, err)
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	var ops []op
	for i, w := range mwc.Webhooks {
		if bytes.Equal(w.ClientConfig.CABundle, pem) {
			continue
		}
		// The test guards against a webhook list changed since the read.
		ops = append(ops, op{"test", fmt.Sprintf("/webhooks/%d/name", i), w.Name},
			op{"add", fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), pem}) // []byte: base64, as the API wants
	}
	if len(ops) == 0 {
		return 0, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return 0, err
	}
	if _, err := api.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "weft-control"}); err != nil {
		return 0, fmt.Errorf("writing the caBundle of MutatingWebhookConfiguration %s: %w", name, err)
	}
	return len(ops) / 2, nil
}
