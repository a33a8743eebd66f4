package store

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/control/mesh"
)

// Backend keeps the store's records where they survive the process: a state
// file on one machine (FileBackend) or an etcd cluster shared by replicas
// (EtcdBackend). The Store validates and compiles; a backend only persists,
// orders commits and reports the commits of other writers.
type Backend interface {
	// Load returns the records as last committed.
	Load(ctx context.Context) (*Records, error)
	// Commit writes w atomically if the backend is still at revision base,
	// and returns the revision w was committed at. When another writer
	// committed since base it returns ErrStale and writes nothing.
	Commit(ctx context.Context, base int64, w Write) (int64, error)
	// Revision is the latest committed revision, read from the backend
	// itself (not a cache), so a writer can tell whether its view is current.
	Revision(ctx context.Context) (int64, error)
	// Watch calls fn, in revision order, with the records after every
	// commit (its own included, possibly more than once) until ctx ends.
	// A backend no other process writes to returns at once.
	Watch(ctx context.Context, fn func(*Records))
	// Close releases the backend.
	Close() error
}

// ErrStale is Commit's answer when another writer committed first: read
// again and retry.
var ErrStale = errors.New("store: the store changed since it was read")

// Records are the persisted state at one revision. Every Object's
// Resource.ResourceVersion is the revision that last wrote it. Records are
// never modified once handed to the store.
type Records struct {
	Revision int64
	Objects  map[mesh.Key]Object
	// Nodes are the node versions: the revision at which each node's
	// compiled config last changed, and that config's sha256.
	Nodes map[string]NodeRecord
}

// NodeRecord is a node's version and the sha256 of its compiled content.
type NodeRecord struct {
	Version string
	Sum     string
}

// Write is one commit: resources written or deleted, and every node's
// record after it. The backend stamps written resources, and nodes whose
// Version is "" (their compiled content changed), with the commit's
// revision.
type Write struct {
	Puts    []Object
	Deletes []mesh.Key
	Nodes   map[string]NodeRecord
	// Audit is the change's entry in a shared audit log, committed in the
	// same transaction (etcd only; other backends ignore it).
	Audit *clientv3.Op
}

func emptyRecords() *Records {
	return &Records{Objects: map[mesh.Key]Object{}, Nodes: map[string]NodeRecord{}}
}
