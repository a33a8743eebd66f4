package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filewatch"
)

// LoadFile reads, validates and applies the config file at path.
func (p *Proxy) LoadFile(ctx context.Context, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(path, raw)
	if err != nil {
		return err
	}
	if err := config.CheckFiles(path, raw, cfg, filepath.Dir(path)); err != nil {
		return err
	}
	return p.Apply(ctx, cfg, raw, path)
}

// WatchFile reloads path whenever it, or a Wasm module it names, changes,
// until ctx ends. Directories are watched, not files, so it survives
// editors that write a new file and rename it over the old one and
// Kubernetes ConfigMap volumes that swap a `..data` symlink; but only
// events on the config file, the symlinks leading to it and the modules
// count (filewatch), so a busy neighbour such as an access log in the same
// directory neither delays nor triggers a reload. Events are debounced;
// when neither the file nor a module's bytes changed nothing is reapplied;
// an invalid file is logged and the config in force keeps serving.
func (p *Proxy) WatchFile(ctx context.Context, path string, debounce time.Duration) error {
	w, err := filewatch.New(filewatch.Options{Debounce: debounce, Logger: p.log})
	if err != nil {
		return err
	}
	// The config's own directory must be watchable; a module's directory
	// that is not only costs its edits until the next config edit.
	if err := w.Track([]string{path}, filepath.Dir(path)); err != nil {
		_ = w.Close()
		return err
	}
	raw, _ := os.ReadFile(path)
	cfg, _ := config.Parse(path, raw)
	modules := moduleFiles(path, cfg)
	if err := w.Track(append([]string{path}, modules...), filepath.Dir(path)); err != nil {
		p.log.Warn("config watch: a module's directory cannot be watched; its edits apply with the next config edit", zap.Error(err))
	}
	last := fingerprint(raw, modules)
	go w.Run(ctx, func() {
		raw, err := os.ReadFile(path)
		if err != nil {
			p.log.Warn("config reload: cannot read file; keeping the config in force", zap.String("path", path), zap.Error(err))
			return
		}
		cfg, perr := config.Parse(path, raw)
		if perr == nil {
			modules = moduleFiles(path, cfg)
		}
		// Re-track: a ConfigMap swap points the link at a new directory, and
		// a new config may name other modules.
		_ = w.Track(append([]string{path}, modules...), filepath.Dir(path))
		fp := fingerprint(raw, modules)
		if fp == last {
			return
		}
		last = fp
		err = perr
		if err == nil {
			err = p.Apply(ctx, cfg, raw, path)
		} else {
			p.metrics.Reload("rejected")
			msg := err.Error()
			p.lastErr.Store(&msg)
		}
		if err != nil {
			p.log.Error("config reload rejected; keeping the config in force", zap.String("path", path),
				zap.String("version", p.Version()), zap.Error(err))
			return
		}
		p.log.Info("config reloaded", zap.String("path", path), zap.String("version", p.Version()))
	})
	return nil
}

// moduleFiles are the Wasm module files cfg names, relative paths read
// from the config file's directory as LoadFile reads them (nil for a
// config that did not parse).
func moduleFiles(path string, cfg *config.Config) []string {
	if cfg == nil {
		return nil
	}
	var out []string
	for _, f := range cfg.Filters {
		if m := f.Module.Path; m != "" {
			if !filepath.IsAbs(m) {
				m = filepath.Join(filepath.Dir(path), m)
			}
			out = append(out, m)
		}
	}
	return out
}

// fingerprint digests the config bytes and the modules' bytes: an event
// that changed neither is not a reload.
func fingerprint(raw []byte, modules []string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(raw)
	for _, m := range modules {
		b, err := os.ReadFile(m)
		fmt.Fprintf(h, "\x00%s\x00%d\x00", m, len(b))
		if err != nil {
			h.Write([]byte(err.Error()))
		}
		h.Write(b)
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
