// Package inject adds the weft sidecar to pods as they are created: the
// mutating admission webhook `weft control` serves at /inject when its
// Kubernetes source is on (deploy/kubernetes/inject.yaml registers it).
//
// Values (values.go) are the operator's injection settings, validated
// once at start; Injector.Patch (patch.go) turns a pod into the JSON
// patch that adds the `weft` container, its projected service-account
// token, the CA bundle and a cache volume; Injector.ServeHTTP
// (webhook.go) speaks AdmissionReview v1.
//
// The package must not call the Kubernetes API or change mesh state: a
// review's answer depends only on the pod in the request and the values,
// which is why the webhook needs no client authentication (see
// docs/kubernetes.md, "Sidecar injection").
package inject
