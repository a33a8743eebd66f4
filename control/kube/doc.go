// Package kube makes a Kubernetes cluster a source of the control plane's
// mesh, beside the API and the file source: shared informers (client-go)
// watch the cluster, translators turn what they hold into mesh resources,
// and the Source applies the difference to the store as SourceKube, which
// the API cannot edit. Translators may also write status back to the
// objects they read (route conditions).
//
// The discovery translator (discovery.go) turns Services and their
// EndpointSlices into mesh Services; other translators (the Gateway API,
// weft's CRDs) plug in through Translator. The sidecar injector is in
// inject/; KeepWebhookCABundle (cabundle.go) keeps its webhook
// configuration's caBundle equal to the control plane's CA roots. The package must not compile
// sidecar configs or validate meshes itself: the store does, and refuses a
// translation that does not compile, keeping the last good one.
package kube
