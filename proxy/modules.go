package proxy

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/wasm"
	"github.com/weftmesh/weft/proxy/wasm/oci"
)

// moduleSource pulls the filters' OCI modules and checks their signatures.
// Pulls are cached by digest (on disk beside the compiled modules when the
// sidecar has a cache directory); a signature, once verified for a manifest
// and a set of keys, is not fetched again while the sidecar runs.
type moduleSource struct {
	puller   *oci.Puller
	log      *zap.Logger
	refusals *prometheus.CounterVec // by filter and stage: pull, verify
	// unavailable counts fail_open filters a config ran without.
	unavailable *prometheus.CounterVec

	verifier oci.Verifier
}

func newModuleSource(dir string, log *zap.Logger) *moduleSource {
	return &moduleSource{
		puller: oci.NewPuller(oci.Options{CacheDir: dir}),
		log:    log,
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_wasm_module_refusals_total",
			Help: "Filter modules refused before loading, by filter and stage (pull, verify); the last good config kept serving.",
		}, []string{"filter", "stage"}),
		unavailable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_wasm_filter_unavailable_total",
			Help: "Configs applied without a fail_open filter that could not be fetched, verified, compiled or started.",
		}, []string{"filter"}),
	}
}

// spec pulls f's module (f.Module.OCI set) and verifies it, then builds its
// PluginSpec. Paths in f are relative to baseDir.
func (m *moduleSource) spec(ctx context.Context, f config.Filter, baseDir string) (wasm.PluginSpec, error) {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	src := oci.Source{Ref: f.Module.OCI, Policy: f.Module.PullPolicy, PullSecret: rel(f.Module.PullSecret), CAFile: rel(f.Module.CAFile)}
	mod, err := m.puller.Pull(ctx, src)
	if err != nil {
		m.refusals.WithLabelValues(f.Name, "pull").Inc()
		return wasm.PluginSpec{}, fmt.Errorf("filter %q: module.oci: %w", f.Name, err)
	}
	if v := f.Module.Verify; v != nil {
		files := make([]string, len(v.Keys))
		for i, k := range v.Keys {
			files[i] = rel(k)
		}
		if err := m.verify(ctx, mod, src, files); err != nil {
			m.refusals.WithLabelValues(f.Name, "verify").Inc()
			return wasm.PluginSpec{}, fmt.Errorf("filter %q: module.verify: %s (%s): %w", f.Name, f.Module.OCI, mod.Manifest, err)
		}
	}
	if !mod.Cached {
		m.log.Info("pulled filter module", zap.String("filter", f.Name), zap.String("ref", f.Module.OCI),
			zap.String("manifest", mod.Manifest), zap.String("sha256", mod.SHA256), zap.Int("bytes", len(mod.Bytes)))
	}
	return wasm.SpecWithModule(f, mod.Bytes)
}

func (m *moduleSource) verify(ctx context.Context, mod oci.Module, src oci.Source, files []string) error {
	keys, err := oci.LoadPublicKeys(files...)
	if err != nil {
		return err
	}
	return m.verifier.Verify(ctx, mod.Repository, mod.Manifest, keys, src, 0)
}
