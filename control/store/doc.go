// Package store owns the control plane's versioned resource store: one
// revision counter, every resource with the source that owns it (the file
// source or the API) and its resource_version, whole-mesh validation of
// every change before it is committed, the per-node snapshots compiled at
// each revision, and the append-only audit log.
//
// Where the records live is a Backend: FileBackend (DATA/state.json, one
// process) or EtcdBackend (an etcd cluster shared by control-plane
// replicas, commits guarded by compare-and-swap on the revision, other
// replicas' commits followed by a watch). The package also keeps secrets
// sealed in etcd under the operator's key (Secrets), runs single-writer
// jobs under an etcd lock (Leader), and gives replicas what they share
// beside the mesh: join tokens (EtcdKV), module blobs (EtcdBlobs) and the
// audit log (Audit.Share).
//
// It must not watch files, serve HTTP or talk to sidecars: sources call
// Apply, and distribution reads Node and Changed.
package store
