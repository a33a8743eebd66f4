package store

import (
	"context"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdKV is a small key-value space under PREFIX/NAME/ in etcd that every
// replica shares: join tokens (ca.TokenKV) use it.
type EtcdKV struct {
	cli    *clientv3.Client
	prefix string
}

// NewEtcdKV keeps its keys under prefix+name+"/" (prefix as in
// EtcdOptions, default /weft/).
func NewEtcdKV(cli *clientv3.Client, prefix, name string) *EtcdKV {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	return &EtcdKV{cli: cli, prefix: prefix + name + "/"}
}

// key escapes a key (a node id) into one path segment.
func (k *EtcdKV) key(key string) string { return k.prefix + url.PathEscape(key) }

// Get returns key's value and mod revision (0 when it is not set).
func (k *EtcdKV) Get(ctx context.Context, key string) ([]byte, int64, error) {
	resp, err := k.cli.Get(ctx, k.key(key))
	if err != nil {
		return nil, 0, etcdError("reading "+k.key(key), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// List returns every value under the prefix.
func (k *EtcdKV) List(ctx context.Context) ([][]byte, error) {
	resp, err := k.cli.Get(ctx, k.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError("reading "+k.prefix, err)
	}
	out := make([][]byte, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, kv.Value)
	}
	return out, nil
}

// Put writes key on a lease of ttl (rounded up to a second): etcd drops
// it then.
func (k *EtcdKV) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	lease, err := k.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return etcdError("granting a lease for "+k.key(key), err)
	}
	if _, err := k.cli.Put(ctx, k.key(key), string(value), clientv3.WithLease(lease.ID)); err != nil {
		return etcdError("writing "+k.key(key), err)
	}
	return nil
}

// Swap writes key, keeping its lease, if its mod revision is still rev.
func (k *EtcdKV) Swap(ctx context.Context, key string, value []byte, rev int64) (bool, error) {
	resp, err := k.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k.key(key)), "=", rev)).
		Then(clientv3.OpPut(k.key(key), string(value), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return false, etcdError("writing "+k.key(key), err)
	}
	return resp.Succeeded, nil
}

// Delete removes key.
func (k *EtcdKV) Delete(ctx context.Context, key string) error {
	if _, err := k.cli.Delete(ctx, k.key(key)); err != nil {
		return etcdError("deleting "+k.key(key), err)
	}
	return nil
}

// Create writes key, with no lease, unless it exists; false when it does.
func (k *EtcdKV) Create(ctx context.Context, key string, value []byte) (bool, error) {
	resp, err := k.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k.key(key)), "=", 0)).
		Then(clientv3.OpPut(k.key(key), string(value))).
		Commit()
	if err != nil {
		return false, etcdError("writing "+k.key(key), err)
	}
	return resp.Succeeded, nil
}

// Watch calls fn with key's value now and at every change (nil when it
// is deleted) until ctx ends. It reads the key again whenever the watch
// breaks, so fn sees the latest value after a reconnect.
func (k *EtcdKV) Watch(ctx context.Context, key string, fn func(value []byte)) {
	for ctx.Err() == nil {
		resp, err := k.cli.Get(ctx, k.key(key))
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		var v []byte
		if len(resp.Kvs) > 0 {
			v = resp.Kvs[0].Value
		}
		fn(v)
		for wr := range k.cli.Watch(clientv3.WithRequireLeader(ctx), k.key(key), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					fn(nil)
				} else {
					fn(ev.Kv.Value)
				}
			}
		}
		sleep(ctx, 100*time.Millisecond)
	}
}
