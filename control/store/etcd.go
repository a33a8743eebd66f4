package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/mesh"
)

// DefaultEtcdPrefix is where the control plane keeps its keys in etcd.
const DefaultEtcdPrefix = "/weft/"

// EtcdBackend keeps the records in etcd, shared by every control-plane
// replica. Its keys, under the prefix:
//
//	mesh/head                    written by every commit: its mod revision
//	                             is the store revision, its value every
//	                             node's content sha256 and version
//	mesh/res/KIND/NS/NAME        {"source","file","resource"}; the key's mod
//	                             revision is the resource_version
//
// A commit is one etcd transaction guarded by the mod revision of
// mesh/head, so two replicas can never both commit on the same revision.
// Versions are etcd revisions, so every replica reports the same version
// for the same state. A node whose config changed in a commit has version
// 0 in mesh/head, read as the head's mod revision: the commit's revision,
// unknown until etcd assigns it. One key for all nodes keeps a change that
// touches every sidecar to two keys plus the resources it writes.
type EtcdBackend struct {
	cli    *clientv3.Client
	prefix string
	log    *zap.Logger
	// MaxTxnOps is the etcd server's --max-txn-ops (128 by default), to
	// refuse an oversized change with a clear error.
	maxOps int
}

// EtcdOptions configure an EtcdBackend.
type EtcdOptions struct {
	// Prefix of every key (default /weft/).
	Prefix string
	// MaxTxnOps is the etcd server's --max-txn-ops (default 128).
	MaxTxnOps int
	Logger    *zap.Logger
}

// NewEtcdBackend uses cli, which the caller keeps open until the backend
// is closed (Close does not close cli).
func NewEtcdBackend(cli *clientv3.Client, o EtcdOptions) *EtcdBackend {
	if o.Prefix == "" {
		o.Prefix = DefaultEtcdPrefix
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = 128
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &EtcdBackend{cli: cli, prefix: o.Prefix, log: o.Logger, maxOps: o.MaxTxnOps}
}

func (b *EtcdBackend) meshPrefix() string { return b.prefix + "mesh/" }
func (b *EtcdBackend) headKey() string    { return b.prefix + "mesh/head" }
func (b *EtcdBackend) resPrefix() string  { return b.prefix + "mesh/res/" }

func (b *EtcdBackend) resKey(k mesh.Key) string {
	return b.resPrefix() + url.PathEscape(string(k.Kind)) + "/" + url.PathEscape(k.Namespace) + "/" + url.PathEscape(k.Name)
}

// TooBigError is a change that writes more etcd keys than one transaction
// may hold (HTTP 413). Nothing was sent.
type TooBigError struct{ Keys, Max int }

// Error says what to do.
func (e *TooBigError) Error() string {
	return fmt.Sprintf("the change writes %d etcd keys (one per resource, plus one) but one etcd transaction holds at most %d: split it, or raise etcd's --max-txn-ops and weft's -etcd-max-txn-ops", e.Keys, e.Max)
}

// etcdNode is a node's entry in mesh/head; Version 0 is the head's own mod
// revision.
type etcdNode struct {
	Sum     string `json:"sha256"`
	Version int64  `json:"version,omitempty"`
}

// etcdObject is a resource's value in etcd.
type etcdObject struct {
	Source   string          `json:"source"`
	File     string          `json:"file,omitempty"`
	Resource json.RawMessage `json:"resource"`
}

// Load reads every key under the prefix at one revision.
func (b *EtcdBackend) Load(ctx context.Context) (*Records, error) {
	m, _, err := b.load(ctx)
	if err != nil {
		return nil, err
	}
	return m.records(), nil
}

func (b *EtcdBackend) load(ctx context.Context) (*mirror, int64, error) {
	resp, err := b.cli.Get(ctx, b.meshPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, etcdError("reading "+b.meshPrefix(), err)
	}
	m := &mirror{b: b, objs: map[mesh.Key]Object{}, keys: map[string]mesh.Key{}, nodes: map[string]NodeRecord{}}
	for _, kv := range resp.Kvs {
		if err := m.put(string(kv.Key), kv.Value, kv.ModRevision); err != nil {
			return nil, 0, err
		}
	}
	return m, resp.Header.Revision, nil
}

// Revision reads mesh/head's mod revision (a linearizable read: a quorum
// answers it).
func (b *EtcdBackend) Revision(ctx context.Context) (int64, error) {
	resp, err := b.cli.Get(ctx, b.headKey())
	if err != nil {
		return 0, etcdError("reading "+b.headKey(), err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return resp.Kvs[0].ModRevision, nil
}

// Commit writes w in one transaction that succeeds only if mesh/head was
// last written at base.
func (b *EtcdBackend) Commit(ctx context.Context, base int64, w Write) (int64, error) {
	ops := make([]clientv3.Op, 0, len(w.Puts)+len(w.Deletes)+1)
	for _, k := range w.Deletes {
		ops = append(ops, clientv3.OpDelete(b.resKey(k)))
	}
	for _, o := range w.Puts {
		r := *o.Resource
		r.ResourceVersion = 0 // the key's mod revision says it
		rb, err := json.Marshal(&r)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", r.Key(), err)
		}
		v, err := json.Marshal(etcdObject{Source: o.Source, File: o.File, Resource: rb})
		if err != nil {
			return 0, err
		}
		ops = append(ops, clientv3.OpPut(b.resKey(r.Key()), string(v)))
	}
	head := make(map[string]etcdNode, len(w.Nodes))
	for id, n := range w.Nodes {
		v := int64(0)
		if n.Version != "" {
			var err error
			if v, err = strconv.ParseInt(n.Version, 10, 64); err != nil {
				return 0, fmt.Errorf("node %q: version %q is not an etcd revision", id, n.Version)
			}
		}
		head[id] = etcdNode{Sum: n.Sum, Version: v}
	}
	hb, err := json.Marshal(head)
	if err != nil {
		return 0, err
	}
	ops = append(ops, clientv3.OpPut(b.headKey(), string(hb)))
	if w.Audit != nil {
		ops = append(ops, *w.Audit)
	}
	if len(ops) > b.maxOps {
		return 0, &TooBigError{Keys: len(ops), Max: b.maxOps}
	}
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(b.headKey()), "=", base)).
		Then(ops...).
		Commit()
	if err != nil {
		return 0, etcdError("committing", err)
	}
	if !resp.Succeeded {
		return 0, ErrStale
	}
	return resp.Header.Revision, nil
}

// Watch follows the mesh keys from a fresh read, and reads again whenever
// the watch is compacted away or breaks.
func (b *EtcdBackend) Watch(ctx context.Context, fn func(*Records)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		m, rev, err := b.load(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn("etcd: reading the mesh failed; serving the last state read, retrying", zap.Duration("retry_in", backoff), zap.Error(err))
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
			}
			continue
		}
		backoff = 100 * time.Millisecond
		fn(m.records())
		b.follow(ctx, m, rev+1, fn)
	}
}

func (b *EtcdBackend) follow(ctx context.Context, m *mirror, from int64, fn func(*Records)) {
	// WithRequireLeader ends the watch when its member loses the leader,
	// so a replica stuck on a partitioned member moves to another.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range b.cli.Watch(wctx, b.meshPrefix(), clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				b.log.Warn("etcd: watch ended; reading again", zap.Error(err))
				sleep(ctx, 100*time.Millisecond)
			}
			return
		}
		before := m.rev
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				m.del(string(ev.Kv.Key))
				continue
			}
			if err := m.put(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision); err != nil {
				b.log.Error("etcd: a stored resource does not decode; ignoring it", zap.Error(err))
			}
		}
		// etcd never splits one revision's events across responses, so a
		// new mesh/head means a whole commit has arrived.
		if m.rev != before {
			fn(m.records())
		}
	}
}

// Close does nothing: the caller owns the client.
func (b *EtcdBackend) Close() error { return nil }

// mirror is the watcher's copy of the mesh keys.
type mirror struct {
	b     *EtcdBackend
	rev   int64
	objs  map[mesh.Key]Object
	keys  map[string]mesh.Key // etcd key → resource key
	nodes map[string]NodeRecord
	// cached is the last records handed out, shared until the next change.
	cached *Records
}

func (m *mirror) put(key string, value []byte, modRev int64) error {
	m.cached = nil
	switch {
	case key == m.b.headKey():
		var head map[string]etcdNode
		if err := json.Unmarshal(value, &head); err != nil {
			return fmt.Errorf("etcd key %s: %w", key, err)
		}
		m.rev = modRev
		m.nodes = make(map[string]NodeRecord, len(head))
		for id, n := range head {
			if n.Version == 0 {
				n.Version = modRev
			}
			m.nodes[id] = NodeRecord{Version: strconv.FormatInt(n.Version, 10), Sum: n.Sum}
		}
	case strings.HasPrefix(key, m.b.resPrefix()):
		var eo etcdObject
		if err := json.Unmarshal(value, &eo); err != nil {
			return fmt.Errorf("etcd key %s: %w", key, err)
		}
		r, err := decodeOne("etcd key "+key, eo.Resource)
		if err != nil {
			return err
		}
		r.ResourceVersion = modRev
		m.objs[r.Key()] = Object{Resource: r, Source: eo.Source, File: eo.File}
		m.keys[key] = r.Key()
	}
	return nil
}

func (m *mirror) del(key string) {
	m.cached = nil
	if k, ok := m.keys[key]; ok {
		delete(m.objs, k)
		delete(m.keys, key)
	}
}

// records copies the mirror: the store keeps what it is given.
func (m *mirror) records() *Records {
	if m.cached == nil {
		m.cached = &Records{Revision: m.rev, Objects: maps.Clone(m.objs), Nodes: maps.Clone(m.nodes)}
	}
	return m.cached
}

// etcdError says what failed, and what to check when etcd has no quorum
// or cannot be reached.
func etcdError(what string, err error) error {
	noQuorum := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	for _, e := range []error{rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged} {
		noQuorum = noQuorum || errors.Is(err, e)
	}
	// The member the client talks to went away mid-call (a cut
	// connection: gRPC Unavailable): the same question applies.
	noQuorum = noQuorum || status.Code(err) == codes.Unavailable
	if noQuorum {
		return fmt.Errorf("etcd: %s: no answer (is a majority of the etcd members up and reachable?): %w", what, err)
	}
	return fmt.Errorf("etcd: %s: %w", what, err)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
