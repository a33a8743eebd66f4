package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// HogEvery is how often weft-wasm-hog's filter hogs: on every HogEvery-th
// request each of its VMs sees.
const HogEvery = 200

// Hog pool: HogVMs VMs of HogMiB each, so the issue 18 bound on weft's
// peak RSS is its idle twin's plus 2 × HogVMs × HogMiB.
const (
	HogVMs = 2
	HogMiB = 64
)

// WeftWasmHog proxies through weft with a hostile Go SDK filter (the
// failure guest, VM config "hog-every=N"): on every HogEvery-th request a
// VM sees, it allocates memory, writing every page, until its Go runtime
// dies at the VM's limit, and the VM is replaced. fail_open, so every
// request is answered; the callback deadline is long enough for a hog to
// fill its VM. Its report line's peak RSS against weft-wasm-hog-idle's is
// what replacing dying VMs costs (issue 18 §1: at most twice the VMs'
// limits above the base).
func WeftWasmHog() Scenario { return weftWasmHog(HogEvery) }

// WeftWasmHogIdle is WeftWasmHog's filter with the same pool that never
// hogs: the base its peak RSS is compared with.
func WeftWasmHogIdle() Scenario { return weftWasmHog(0) }

func weftWasmHog(every int) Scenario {
	name, what, vmConfig, compare := "weft-wasm-hog", fmt.Sprintf("dying at its %d MiB limit on every %dth request a VM sees", HogMiB, every), fmt.Sprintf("hog-every=%d", every), "weft-wasm-hog-idle"
	if every == 0 {
		name, what, vmConfig, compare = "weft-wasm-hog-idle", "that never hogs (the hog's base)", "", "weft"
	}
	return Scenario{
		Name:        name,
		Description: fmt.Sprintf("client → weft proxy with a Go SDK filter (%d VMs × %d MiB) %s → upstream", HogVMs, HogMiB, what),
		Compare:     compare,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := env.BuildGuest(ctx, guestsDir, "./gosdk/failure")
			if err != nil {
				return "", err
			}
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, _, err := env.startWeftFor(ctx, up, func(cfg *config.Config) {
				addFilters(cfg, 1, func(int) config.Filter {
					return config.Filter{
						Name: "hog", Module: config.Module{Path: module}, VMConfig: config.RawConfig(vmConfig),
						PoolSize: HogVMs, MemoryLimitMiB: HogMiB, CallbackTimeout: config.Duration(2 * time.Second),
						FailurePolicy: "fail_open",
					}
				})
			})
			if err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}
