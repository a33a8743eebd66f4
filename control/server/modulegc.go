package server

import (
	"context"
	"strings"
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

// CollectModules deletes the registry's modules that no resource or
// snapshot has named for the grace period (Options.ModuleGrace), logs and
// audits each, and returns them.
func (s *Server) CollectModules() ([]registry.Module, error) { return s.collect(s.o.ModuleGrace) }

func (s *Server) collect(grace time.Duration) ([]registry.Module, error) {
	gone, err := s.reg.Collect(moduleRefs(s.store.Mesh(), s.store.Nodes()), grace)
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

// collectModules runs CollectModules every half grace period (at most a
// minute) until ctx ends.
func (s *Server) collectModules(ctx context.Context) {
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
