// Package demo runs a whole Weft mesh on loopback in one process: small
// demo services, a sidecar in front of them from an embedded config, a
// control plane driving a second sidecar, and a short tour that sends real
// requests and prints what happened. It backs `weft demo`.
//
// The first sidecar runs the first-party plugins (auth, fault, routing,
// telemetry), built at start from the repository's plugins/ with the Go
// toolchain and cached in the user cache dir by a digest of their sources,
// so a second start builds nothing. When they cannot be built (no go
// command, not run from the source tree) or loaded, the demo says why and
// runs without them.
//
// Two gRPC servers (package grpcsvc: grpc-go's test service, health and
// reflection) sit behind the first sidecar, routed by gRPC service name to
// an HTTP/2 cluster with a gRPC health check; the tour calls them through
// the sidecar and flips one to NOT_SERVING and back to show the check at
// work. examples/demo/grpccall is a client for them that needs only Go.
//
// The control plane (control/server, with a temporary data directory
// removed at exit) starts with the demo services as mesh resources
// (mesh.yaml.tmpl, applied through its API) and drives the second sidecar,
// node demo-app, through control/client, as `weft proxy --control` does.
// The tour changes the reviews canary live with the call `weft ctl
// set-weight` makes, waits (bounded) until /v1/status shows the sidecar
// applied it, and measures the new split.
//
// It is an example, not a library: nothing in the proxy or the control
// plane may import it, and it changes nothing outside its own process and
// temporary directory.
package demo
