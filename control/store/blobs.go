package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/control/registry"
)

// BlobChunk is the most a module blob puts in one etcd value: under etcd's
// default request limit (--max-request-bytes, 1.5 MiB) with room for the
// key and the request's framing.
const BlobChunk = 1 << 20

// EtcdBlobs keeps module blobs in etcd for every replica
// (registry.Shared), content-addressed and chunked:
//
//	modules/SHA256/NNNNN   the bytes, BlobChunk at a time
//	modules/SHA256/meta    {"size","chunks"}, written last
//
// A blob is there once its meta key is: a replica that dies mid-upload
// leaves chunks without one, which the next upload of the module
// overwrites.
type EtcdBlobs struct {
	cli    *clientv3.Client
	prefix string
}

// NewEtcdBlobs keeps blobs under PREFIX/modules/ (prefix as in
// EtcdOptions).
func NewEtcdBlobs(cli *clientv3.Client, prefix string) *EtcdBlobs {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	return &EtcdBlobs{cli: cli, prefix: prefix + "modules/"}
}

type blobMeta struct {
	Size   int `json:"size"`
	Chunks int `json:"chunks"`
}

func (b *EtcdBlobs) dir(digest string) string  { return b.prefix + digest + "/" }
func (b *EtcdBlobs) meta(digest string) string { return b.dir(digest) + "meta" }
func (b *EtcdBlobs) chunk(digest string, i int) string {
	return fmt.Sprintf("%s%05d", b.dir(digest), i)
}

// Put stores data unless the blob is there.
func (b *EtcdBlobs) Put(ctx context.Context, digest string, data []byte) error {
	resp, err := b.cli.Get(ctx, b.meta(digest), clientv3.WithCountOnly())
	if err != nil {
		return etcdError("reading "+b.meta(digest), err)
	}
	if resp.Count > 0 {
		return nil
	}
	n := 0
	for off := 0; off < len(data) || n == 0; off += BlobChunk {
		end := min(off+BlobChunk, len(data))
		if _, err := b.cli.Put(ctx, b.chunk(digest, n), string(data[off:end])); err != nil {
			return etcdError("writing "+b.chunk(digest, n), err)
		}
		n++
	}
	m, _ := json.Marshal(blobMeta{Size: len(data), Chunks: n})
	if _, err := b.cli.Put(ctx, b.meta(digest), string(m)); err != nil {
		return etcdError("writing "+b.meta(digest), err)
	}
	return nil
}

// Get reads a blob, a chunk at a time; registry.ErrNotFound when it is
// not there (or not whole).
func (b *EtcdBlobs) Get(ctx context.Context, digest string) ([]byte, error) {
	resp, err := b.cli.Get(ctx, b.meta(digest))
	if err != nil {
		return nil, etcdError("reading "+b.meta(digest), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, registry.ErrNotFound
	}
	var m blobMeta
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil || m.Size < 0 || m.Size > registry.MaxModuleBytes {
		return nil, fmt.Errorf("etcd key %s: not a module's meta", b.meta(digest))
	}
	out := make([]byte, 0, m.Size)
	for i := 0; i < m.Chunks; i++ {
		resp, err := b.cli.Get(ctx, b.chunk(digest, i))
		if err != nil {
			return nil, etcdError("reading "+b.chunk(digest, i), err)
		}
		if len(resp.Kvs) == 0 {
			return nil, registry.ErrNotFound
		}
		out = append(out, resp.Kvs[0].Value...)
	}
	if len(out) != m.Size {
		return nil, registry.ErrNotFound
	}
	return out, nil
}

// List returns the digests of the blobs that are whole (have a meta key).
func (b *EtcdBlobs) List(ctx context.Context) ([]string, error) {
	resp, err := b.cli.Get(ctx, b.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, etcdError("reading "+b.prefix, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		if d, ok := strings.CutSuffix(strings.TrimPrefix(string(kv.Key), b.prefix), "/meta"); ok && !strings.Contains(d, "/") {
			out = append(out, d)
		}
	}
	return out, nil
}

// Delete removes a blob, its meta key first.
func (b *EtcdBlobs) Delete(ctx context.Context, digest string) error {
	if _, err := b.cli.Delete(ctx, b.meta(digest)); err != nil {
		return etcdError("deleting "+b.meta(digest), err)
	}
	if _, err := b.cli.Delete(ctx, b.dir(digest), clientv3.WithPrefix()); err != nil {
		return etcdError("deleting "+b.dir(digest), err)
	}
	return nil
}

// Revision is the store's revision now: Watch from it misses nothing that
// happens after this call.
func (b *EtcdBlobs) Revision(ctx context.Context) (int64, error) {
	resp, err := b.cli.Get(ctx, b.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdError("reading "+b.prefix, err)
	}
	return resp.Header.Revision, nil
}

// Watch calls fn for every blob that becomes whole (its meta key written;
// deleted false) or is removed (deleted true) after revision from (0: from
// the present), until ctx ends. A broken watch resumes after the last
// revision it reported, so nothing is missed; only when etcd has compacted
// that history away does it start again from the present, and then it
// reports a put with an empty digest: something may have been missed.
func (b *EtcdBlobs) Watch(ctx context.Context, from int64, fn func(digest string, deleted bool)) {
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if from > 0 {
			opts = append(opts, clientv3.WithRev(from+1))
		}
		for wr := range b.cli.Watch(clientv3.WithRequireLeader(ctx), b.prefix, opts...) {
			if wr.CompactRevision != 0 {
				from = 0 // the history is gone: from the present, and say so
				fn("", false)
				break
			}
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				from = ev.Kv.ModRevision
				d, ok := strings.CutSuffix(strings.TrimPrefix(string(ev.Kv.Key), b.prefix), "/meta")
				if !ok || strings.Contains(d, "/") {
					continue
				}
				fn(d, ev.Type == clientv3.EventTypeDelete)
			}
		}
		if ctx.Err() == nil {
			sleep(ctx, 100*time.Millisecond)
		}
	}
}
