// Package store owns the control plane's versioned resource store: one
// revision counter, every resource with the source that owns it (the file
// source or the API) and its resource_version, whole-mesh validation of
// every change before it is committed, the per-node snapshots compiled at
// each revision, the state file that survives restarts, and the append-only
// audit log.
//
// It must not watch files, serve HTTP or talk to sidecars: sources call
// Apply, and distribution reads Node and Changed.
package store
