// Package server owns the control plane's HTTP API and its wiring: the
// resource API over the store (create, replace, delete, get, list, apply,
// with optimistic concurrency), the module registry endpoints, the watch
// long poll that distributes per-node snapshots, ACK/NACK tracking and
// /v1/status, and /v1/telemetry from the metrics scraper. It serves them
// over TLS only (a certificate from the CA, or the operator's) and decides
// who calls (auth.go): operators by bearer token or client certificate,
// with a role; sidecars by the certificate issued to their node, for
// their node only.
//
// It must not validate or compile resources itself (mesh and store do) and
// it must not hold state that a restart cannot rebuild from the data
// directory, apart from what sidecars tell it (ACKs, last seen), which they
// tell it again.
package server
