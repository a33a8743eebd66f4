package proxy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
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

// WatchFile reloads path whenever it changes, until ctx ends. It watches
// the file's directory, not the file, so it survives editors that write a
// new file and rename it over the old one, and Kubernetes ConfigMap
// volumes that swap a `..data` symlink. Events are debounced; a file whose
// bytes did not change is not reapplied; an invalid file is logged and the
// config in force keeps serving.
func (p *Proxy) WatchFile(ctx context.Context, path string, debounce time.Duration) error {
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return err
	}
	// A symlinked file may live in another directory (ConfigMap ..data):
	// watch its target's directory too.
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dir {
		_ = w.Add(filepath.Dir(real))
	}
	last, _ := os.ReadFile(path)
	go func() {
		defer w.Close()
		var timer *time.Timer
		fire := make(chan struct{}, 1)
		for {
			select {
			case <-ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				_ = ev
				if timer == nil {
					timer = time.AfterFunc(debounce, func() {
						select {
						case fire <- struct{}{}:
						default:
						}
					})
				} else {
					timer.Reset(debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				p.log.Warn("config watch", zap.Error(err))
			case <-fire:
				raw, err := os.ReadFile(path)
				if err != nil {
					p.log.Warn("config reload: cannot read file; keeping the config in force", zap.String("path", path), zap.Error(err))
					continue
				}
				// Re-watch a symlink target's directory: a ConfigMap swap points
				// the link at a new directory.
				if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dir {
					_ = w.Add(filepath.Dir(real))
				}
				if bytes.Equal(raw, last) {
					continue
				}
				last = raw
				cfg, err := config.Parse(path, raw)
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
					continue
				}
				p.log.Info("config reloaded", zap.String("path", path), zap.String("version", p.Version()))
			}
		}
	}()
	return nil
}
