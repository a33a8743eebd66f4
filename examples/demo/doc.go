// Package demo runs a whole Weft mesh on loopback in one process: small
// demo services, a sidecar in front of them from an embedded config, and a
// short tour that sends real requests and prints what happened. It backs
// `weft demo`.
//
// The sidecar runs the first-party plugins (auth, fault, routing,
// telemetry), built at start from the repository's plugins/ with the Go
// toolchain and cached in the user cache dir by a digest of their sources,
// so a second start builds nothing. When they cannot be built (no go
// command, not run from the source tree) or loaded, the demo says why and
// runs without them.
//
// It is an example, not a library: nothing in the proxy may import it.
package demo
