package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Who made the change: the X-Weft-User header, or "file".
	Who    string `json:"who"`
	Source string `json:"source"`
	Action string `json:"action"`
	// Resources are the keys written or deleted ("Kind namespace/name").
	Resources []string `json:"resources"`
	// Revision is the store revision after the change (the one in force
	// when a change is refused).
	Revision int64 `json:"revision"`
	// Result is "applied" or "refused"; Error says why a change was refused.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// Audit appends JSON lines to a file. It never rewrites or truncates it.
// Shared (Share), it also writes every entry to etcd, where every replica
// reads the entries written through any of them (Read).
type Audit struct {
	mu   sync.Mutex
	f    *os.File
	path string

	cli    *clientv3.Client
	prefix string
	// lease is the etcd lease entries are written on, granted anew every
	// hour (so an entry lives AuditRetention to an hour more).
	lease   clientv3.LeaseID
	leaseAt time.Time
}

// AuditRetention is how long etcd keeps a shared audit entry; each
// replica's audit.log keeps the entries written through it for good.
const AuditRetention = 30 * 24 * time.Hour

// OpenAudit opens (or creates) path for appending.
func OpenAudit(path string) (*Audit, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Audit{f: f, path: path}, nil
}

// Share also writes every entry under PREFIX/audit/ in etcd (prefix as in
// EtcdOptions), and reads them from there.
func (a *Audit) Share(cli *clientv3.Client, prefix string) {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cli, a.prefix = cli, prefix+"audit/"
}

// Write appends e as one line (its Time set now when zero) and syncs;
// shared, it also writes e to etcd.
func (a *Audit) Write(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if err := a.writeFile(e); err != nil {
		return err
	}
	a.mu.Lock()
	shared := a.cli != nil
	a.mu.Unlock()
	if !shared {
		return nil
	}
	// Short: a refused change is audited too, and without an etcd quorum
	// its answer should not wait long for this.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	op, err := a.sharedOp(ctx, e)
	if err != nil {
		return err
	}
	if _, err := a.cli.Do(ctx, *op); err != nil {
		return fmt.Errorf("audit log: %w", etcdError("writing "+string(op.KeyBytes()), err))
	}
	return nil
}

// writeFile appends e to this replica's file and syncs.
func (a *Audit) writeFile(e AuditEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// sharedOp is the etcd put of e (nil when not shared). A Revision of 0
// is read back as the key's own mod revision: an entry committed in the
// change's own transaction does not know its revision yet.
func (a *Audit) sharedOp(ctx context.Context, e AuditEntry) (*clientv3.Op, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cli == nil {
		return nil, nil
	}
	if a.lease == 0 || time.Since(a.leaseAt) > time.Hour {
		l, err := a.cli.Grant(ctx, int64(AuditRetention/time.Second))
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", etcdError("granting a lease", err))
		}
		a.lease, a.leaseAt = l.ID, time.Now()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	// Keys sort by time; the random tail keeps two replicas' entries of
	// the same nanosecond apart.
	var tail [4]byte
	_, _ = rand.Read(tail[:])
	key := fmt.Sprintf("%s%020d-%s", a.prefix, e.Time.UnixNano(), hex.EncodeToString(tail[:]))
	op := clientv3.OpPut(key, string(b), clientv3.WithLease(a.lease))
	return &op, nil
}

// MaxAuditRead bounds one Read.
const MaxAuditRead = 1000

// Read returns the last n entries (at most MaxAuditRead), oldest first:
// those of every replica from etcd when shared, else this one's file.
func (a *Audit) Read(ctx context.Context, n int) ([]AuditEntry, error) {
	n = min(max(n, 1), MaxAuditRead)
	a.mu.Lock()
	cli, prefix := a.cli, a.prefix
	a.mu.Unlock()
	var lines [][]byte
	var revs []int64 // the keys' mod revisions, from etcd
	if cli != nil {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(n)))
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", etcdError("reading "+prefix, err))
		}
		for i := len(resp.Kvs) - 1; i >= 0; i-- {
			lines = append(lines, resp.Kvs[i].Value)
			revs = append(revs, resp.Kvs[i].ModRevision)
		}
	} else {
		b, err := os.ReadFile(a.path)
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		lines = bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		if len(lines) == 1 && len(lines[0]) == 0 {
			lines = nil
		}
		lines = lines[max(0, len(lines)-n):]
	}
	out := make([]AuditEntry, 0, len(lines))
	for i, l := range lines {
		var e AuditEntry
		if err := json.Unmarshal(l, &e); err != nil {
			return nil, fmt.Errorf("audit log: an entry does not decode: %w", err)
		}
		if e.Revision == 0 && revs != nil {
			e.Revision = revs[i] // committed with the change it records
		}
		out = append(out, e)
	}
	return out, nil
}

// Close closes the file.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
