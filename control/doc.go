// Package control is the Weft control plane's command: `weft control`
// parses its flags and runs a server.Server until the context ends.
//
// The control plane's parts live in subpackages: mesh (resources,
// validation, compiler), store (versioned store, audit log), filesource
// (the watched directory), registry (Wasm modules), server (the HTTP API
// and the watch protocol), telemetry (mesh-wide metrics), client (the
// sidecar side) and ctl (the operator CLI). This package holds only
// wiring and must not hold logic.
package control
