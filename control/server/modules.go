package server

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/proxy/wasm/oci"
)

// resolveModules pulls the module of every Filter in rs that names one by
// oci into the registry, checks its signatures, and pins the resource to
// what it pulled (spec.module.sha256 and .manifest), so sidecars are only
// ever given a digest. A module that cannot be pulled or verified refuses
// the whole write, like any invalid field; nothing changes.
func (s *Server) resolveModules(ctx context.Context, rs []*mesh.Resource) error {
	var errs mesh.Errors
	for _, r := range rs {
		if r.Kind != mesh.KindFilter {
			continue
		}
		f, ok := r.Spec.(*mesh.FilterSpec)
		if !ok || f.Module.OCI == "" {
			continue
		}
		if field, err := s.resolveModule(ctx, f); err != nil {
			errs = append(errs, mesh.Error{Key: r.Key(), Field: field, Reason: err.Error(), File: r.File, Line: r.Line})
			s.refuseModule(ModuleRefusal{At: time.Now().UTC(), Filter: r.Key().String(), Ref: f.Module.OCI, Field: field, Reason: err.Error()})
			s.log.Warn("filter module refused", zap.String("filter", r.Key().String()), zap.String("ref", f.Module.OCI), zap.Error(err))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func (s *Server) resolveModule(ctx context.Context, f *mesh.FilterSpec) (field string, err error) {
	if _, _, err := oci.ParseRef(f.Module.OCI); err != nil {
		return "spec.module.oci", err
	}
	src := oci.Source{Ref: f.Module.OCI, Policy: f.Module.PullPolicy, PullSecret: s.o.RegistrySecret, CAFile: s.o.RegistryCA}
	m, err := s.modules.Pull(ctx, src)
	if err != nil {
		return "spec.module.oci", err
	}
	var own []crypto.PublicKey
	if v := f.Module.Verify; v != nil {
		for i, k := range v.Keys {
			ks, err := oci.ParsePublicKeys([]byte(k))
			if err != nil {
				return fmt.Sprintf("spec.module.verify.keys[%d]", i), err
			}
			own = append(own, ks...)
		}
	}
	// Both policies hold: the control plane's (every module) and the
	// filter's own.
	for _, p := range []struct {
		field string
		keys  []crypto.PublicKey
	}{{"spec.module.oci", s.verifyKeys}, {"spec.module.verify", own}} {
		if len(p.keys) == 0 {
			continue
		}
		if err := s.verifier.Verify(ctx, m.Repository, m.Manifest, p.keys, src, 0); err != nil {
			return p.field, fmt.Errorf("%s (%s): signature: %w", f.Module.OCI, m.Manifest, err)
		}
	}
	if _, err := s.reg.Put(bytes.NewReader(m.Bytes)); err != nil {
		return "spec.module.oci", err
	}
	f.Module.SHA256, f.Module.Manifest = m.SHA256, m.Manifest
	if !m.Cached {
		s.log.Info("pulled filter module", zap.String("ref", f.Module.OCI), zap.String("manifest", m.Manifest), zap.String("sha256", m.SHA256))
	}
	return "", nil
}

// maxModuleRefusals is how many refusals /v1/status keeps.
const maxModuleRefusals = 10

// refuseModule records a refused module for /v1/status and ctl status.
func (s *Server) refuseModule(r ModuleRefusal) {
	s.refusalsMu.Lock()
	defer s.refusalsMu.Unlock()
	s.refusals = append(s.refusals, r)
	if len(s.refusals) > maxModuleRefusals {
		s.refusals = s.refusals[len(s.refusals)-maxModuleRefusals:]
	}
}

func (s *Server) moduleRefusals() []ModuleRefusal {
	s.refusalsMu.Lock()
	defer s.refusalsMu.Unlock()
	return slices.Clone(s.refusals)
}
