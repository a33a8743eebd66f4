package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/registry"
	"github.com/weftmesh/weft/control/store"
)

// DefaultModuleGrace is how long an unreferenced module is kept.
const DefaultModuleGrace = 10 * time.Minute

// moduleRefs counts, per module digest, the Filter resources and the
// sidecar snapshots that name it.
func moduleRefs(m *mesh.Mesh, nodes []*store.Snapshot) map[string]int {
	refs := map[string]int{}
	for _, r := range m.List(mesh.KindFilter) {
		if f := r.Filter(); f != nil && f.Module.SHA256 != "" {
			refs[digestOf(f.Module.SHA256)]++
		}
	}
	for _, n := range nodes {
		if n.Config == nil {
			continue
		}
		for _, f := range n.Config.Filters {
			if f.Module.SHA256 != "" {
				refs[digestOf(f.Module.SHA256)]++
			}
		}
	}
	return refs
}

func digestOf(s string) string { return strings.ToLower(strings.TrimPrefix(s, "sha256:")) }

// moduleGCLeader names the etcd lock of the replica that collects the
// shared module store.
const moduleGCLeader = "module-gc"

// sharedGC is what the collection needs on a shared (etcd) registry.
type sharedGC struct {
	blobs *store.EtcdBlobs
	// leader is set while this replica holds the module-gc lock.
	leader atomic.Bool

	mu sync.Mutex
	// unnamedSince is when the leader first saw, unnamed, a shared blob it
	// holds no copy of (uploaded through another replica): its grace
	// period runs from then.
	unnamedSince map[string]time.Time
}

// CollectModules deletes the registry's modules that no resource or
// snapshot has named for the grace period (Options.ModuleGrace), logs and
// audits each, and returns them.
//
// On etcd only the replica holding the module-gc lock deletes from the
// shared store, and only after it has installed the latest committed
// revision, so the references it counts are every replica's: a replica a
// revision behind (or one that never saw a Filter) cannot take a module
// another still names. The others delete their own copies only; a module
// whose shared blob is gone is fetched again from there by no one, and put
// back by a replica that still holds and names it (the registry's reshare).
func (s *Server) CollectModules() ([]registry.Module, error) { return s.collect(s.o.ModuleGrace) }

func (s *Server) collect(grace time.Duration) ([]registry.Module, error) {
	var gone []registry.Module
	var err error
	switch {
	case s.gc.blobs == nil:
		gone, err = s.reg.Collect(moduleRefs(s.store.Mesh(), s.store.Nodes()), grace)
	case !s.gc.leader.Load():
		gone, err = s.reg.CollectLocal(moduleRefs(s.store.Mesh(), s.store.Nodes()), grace)
	default:
		gone, err = s.collectShared(grace)
	}
	for _, m := range gone {
		s.log.Info("module garbage-collected: no resource or snapshot has named it for the grace period",
			zap.String("sha256", m.SHA256), zap.Int64("size", m.Size), zap.Time("unused_since", m.UnusedSince), zap.Duration("grace", grace))
		if s.audit != nil {
			_ = s.audit.Write(store.AuditEntry{Who: "gc", Source: "registry", Action: "module-delete", Resources: []string{"Module " + m.SHA256}, Revision: s.store.Revision(), Result: "applied"})
		}
	}
	if err != nil {
		s.log.Warn("module garbage collection", zap.Error(err))
	}
	return gone, err
}

// collectShared is the leader's collection: on the latest committed
// revision, this replica's modules and the shared blobs it holds no copy
// of.
func (s *Server) collectShared(grace time.Duration) ([]registry.Module, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	latest, err := s.store.Latest(ctx)
	if err == nil {
		err = s.store.WaitRevision(ctx, latest)
	}
	if err != nil {
		return nil, fmt.Errorf("not collecting this round: the latest revision is not installed here: %w", err)
	}
	refs := moduleRefs(s.store.Mesh(), s.store.Nodes())
	gone, err := s.reg.Collect(refs, grace)
	digests, lerr := s.gc.blobs.List(ctx)
	if lerr != nil {
		return gone, errors.Join(err, lerr)
	}
	held := map[string]bool{}
	for _, m := range s.reg.List() {
		held[m.SHA256] = true
	}
	for _, m := range gone {
		held[m.SHA256] = true // deleted from the shared store just now
	}
	now := time.Now()
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	seen := map[string]time.Time{}
	var errs []error
	for _, d := range digests {
		if held[d] || refs[d] > 0 {
			continue
		}
		since, ok := s.gc.unnamedSince[d]
		if !ok {
			since = now
		}
		if now.Sub(since) < grace {
			seen[d] = since
			continue
		}
		if err := s.gc.blobs.Delete(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("removing unused module %s from the shared store: %w", d, err))
			seen[d] = since
			continue
		}
		gone = append(gone, registry.Module{SHA256: d, UnusedSince: since})
	}
	s.gc.unnamedSince = seen
	return gone, errors.Join(append([]error{err}, errs...)...)
}

// followBlobs follows the shared module store until ctx ends, so the
// race between the collecting replica's count and another's commit costs
// no replica more than an etcd round trip or two. A module removed there
// that this replica holds is put back at once if this replica names it
// once the changes it was writing are done (one of them may have named it
// after the collector counted), and at its next lookup otherwise; a
// module put there lets this replica compile a revision it could not for
// want of it, at once rather than at the next commit.
func (s *Server) followBlobs(ctx context.Context, from int64) {
	s.gc.blobs.Watch(ctx, from, func(digest string, deleted bool) {
		if !deleted {
			s.store.Retry()
			return
		}
		if !s.reg.SharedDeleted(digest) {
			return
		}
		s.store.WaitWrites()
		if moduleRefs(s.store.Mesh(), s.store.Nodes())[digest] > 0 {
			s.reg.Reshare(digest)
		}
	})
}

// collectModules runs CollectModules every half grace period (at most a
// minute) until ctx ends. On etcd it also stands for the module-gc lock,
// and holds it while it runs: the holder collects the shared store.
func (s *Server) collectModules(ctx context.Context) {
	if s.gc.blobs != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := store.Leader(ctx, s.o.Etcd, s.o.EtcdPrefix, moduleGCLeader, func(ctx context.Context) error {
					s.gc.leader.Store(true)
					defer s.gc.leader.Store(false)
					s.log.Info("this replica collects the shared module store (module-gc leader)")
					<-ctx.Done()
					return nil
				})
				if err != nil && ctx.Err() == nil {
					s.log.Warn("module collection: standing for the module-gc lock", zap.Error(err))
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	every := min(s.o.ModuleGrace/2, time.Minute)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.CollectModules()
		}
	}
}
