package main

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/config"
)

// adminOnApply is the Applier of a sidecar run by the control plane
// without --admin: its admin listener starts at the address its snapshot
// names (the Sidecar resource's admin, else admin.DefaultAddress), so
// sidecars on one machine each get their own.
type adminOnApply struct {
	*proxy.Proxy
	log *zap.Logger

	mu    sync.Mutex
	srv   *admin.Server
	tried string // the address that last failed, not retried until it changes
}

// Apply applies the config, then starts the admin listener if it is not
// running. A busy address is logged, not fatal: the proxy keeps serving.
func (a *adminOnApply) Apply(ctx context.Context, cfg *config.Config, raw []byte, path string) error {
	if err := a.Proxy.Apply(ctx, cfg, raw, path); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	addr := cfg.Admin.Address
	if a.srv != nil || (a.tried != "" && a.tried == addr) || addr == "off" {
		return nil
	}
	s, err := admin.Start(addr, a.Proxy, a.Proxy.Metrics().Registry(), a.log)
	if err != nil {
		a.tried = addr
		a.log.Error("admin listener not started: give each sidecar its own admin address (the Sidecar resource's admin, or --admin)", zap.Error(err))
		return nil
	}
	a.srv = s
	a.log.Info("admin listening", zap.String("address", s.Addr().String()))
	return nil
}

// Addr is the admin listener's address, "" before it runs.
func (a *adminOnApply) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv == nil {
		return ""
	}
	return a.srv.Addr().String()
}

// Close stops the admin listener.
func (a *adminOnApply) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		_ = a.srv.Close(context.Background())
	}
}
