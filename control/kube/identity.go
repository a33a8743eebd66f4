package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultAudience is the audience a sidecar's projected service-account
// token must be issued for (serviceAccountToken.audience in its pod).
const DefaultAudience = "weft"

// Workload is who a verified service-account token says the caller is.
type Workload struct {
	Namespace      string
	ServiceAccount string
	// Pod and PodUID are the pod the token is bound to ("" for a token
	// bound to no pod, e.g. from kubectl create token).
	Pod, PodUID string
}

// SpiffeID is spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT.
func (w Workload) SpiffeID(trustDomain string) string {
	return "spiffe://" + trustDomain + "/ns/" + w.Namespace + "/sa/" + w.ServiceAccount
}

// ReviewError is a token the API server did not accept, or whose pod is
// gone: the caller is not authenticated (HTTP 401).
type ReviewError struct{ Reason string }

// Error says why the token was refused.
func (e *ReviewError) Error() string { return "service-account token refused: " + e.Reason }

// Reviewer checks sidecars' service-account tokens with the TokenReview
// API (the control plane's service account needs create on
// authentication.k8s.io tokenreviews, and get on pods for tokens bound to
// a pod).
type Reviewer struct {
	client   kubernetes.Interface
	audience string
}

// NewReviewer checks tokens issued for audience ("" = DefaultAudience).
func NewReviewer(client kubernetes.Interface, audience string) *Reviewer {
	if audience == "" {
		audience = DefaultAudience
	}
	return &Reviewer{client: client, audience: audience}
}

// Audience is the audience tokens must carry.
func (r *Reviewer) Audience() string { return r.audience }

// Review verifies token: signed by the cluster, unexpired, for the
// reviewer's audience, of a service account that exists, and, when it is
// bound to a pod, of a pod that still exists with that UID, runs as that
// service account and has not finished. A refusal is *ReviewError; any
// other error is the API server's (unavailable, forbidden).
func (r *Reviewer) Review(ctx context.Context, token string) (Workload, error) {
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{r.audience}}}, metav1.CreateOptions{})
	if err != nil {
		return Workload{}, fmt.Errorf("TokenReview: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return Workload{}, &ReviewError{Reason: reason + " (want a projected service-account token for audience " + r.audience + ")"}
	}
	if !contains(st.Audiences, r.audience) {
		return Workload{}, &ReviewError{Reason: fmt.Sprintf("the token is for audiences %v, not %s", st.Audiences, r.audience)}
	}
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return Workload{}, &ReviewError{Reason: fmt.Sprintf("user %q is not a service account", st.User.Username)}
	}
	w := Workload{Namespace: parts[2], ServiceAccount: parts[3]}
	if v := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(v) == 1 {
		w.Pod = v[0]
	}
	if v := st.User.Extra["authentication.kubernetes.io/pod-uid"]; len(v) == 1 {
		w.PodUID = v[0]
	}
	if w.Pod == "" {
		return w, nil
	}
	pod, err := r.client.CoreV1().Pods(w.Namespace).Get(ctx, w.Pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return Workload{}, &ReviewError{Reason: fmt.Sprintf("the token's pod %s/%s no longer exists", w.Namespace, w.Pod)}
	case err != nil:
		return Workload{}, fmt.Errorf("reading the token's pod %s/%s: %w", w.Namespace, w.Pod, err)
	case w.PodUID != "" && string(pod.UID) != w.PodUID:
		return Workload{}, &ReviewError{Reason: fmt.Sprintf("the token's pod %s/%s was replaced (uid %s, the token names %s)", w.Namespace, w.Pod, pod.UID, w.PodUID)}
	case pod.Spec.ServiceAccountName != w.ServiceAccount:
		return Workload{}, &ReviewError{Reason: fmt.Sprintf("pod %s/%s runs as service account %q, not %q", w.Namespace, w.Pod, pod.Spec.ServiceAccountName, w.ServiceAccount)}
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return Workload{}, &ReviewError{Reason: fmt.Sprintf("pod %s/%s has finished (%s)", w.Namespace, w.Pod, pod.Status.Phase)}
	}
	return w, nil
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// IsReviewError reports whether err is a refused token.
func IsReviewError(err error) bool {
	var re *ReviewError
	return errors.As(err, &re)
}
