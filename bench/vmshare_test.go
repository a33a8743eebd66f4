package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/weftmesh/weft/proxy/config"
)

// vmShareEnv runs TestSharedVMMemory, which prints figures for
// docs/benchmarks.md rather than checking anything.
const vmShareEnv = "WEFT_BENCH_VM_RSS"

// TestSharedVMMemory measures a real `weft proxy`'s resident memory
// (VmRSS) with four no-op Go SDK filters sharing their VMs (the default)
// and with each filter in VMs of its own (isolate_vm: true), idle after
// /ready and after requests through all four; each the median of a few
// runs, since the Go heap of both the proxy and the guests moves between
// runs. Set WEFT_BENCH_VM_RSS=1 to run it.
func TestSharedVMMemory(t *testing.T) {
	if os.Getenv(vmShareEnv) != "1" {
		t.Skip("figures only: set " + vmShareEnv + "=1")
	}
	const filters, requests, runs = 4, 2000, 3
	for _, pool := range []int{1, 2} {
		rss := map[string][2]float64{}
		for _, tc := range []struct {
			name    string
			filters int
			isolate bool
		}{{"no filter", 0, false}, {"shared", filters, false}, {"isolate_vm", filters, true}} {
			var idle, loaded []float64
			for range runs {
				i, l := measureVMs(t, pool, tc.filters, tc.isolate, requests)
				idle, loaded = append(idle, i), append(loaded, l)
			}
			rss[tc.name] = [2]float64{median(idle), median(loaded)}
			t.Logf("pool_size %d, %-10s: VmRSS idle %6.1f MiB, after %d requests %6.1f MiB (medians of %d; idle %.1f, loaded %.1f)",
				pool, tc.name, rss[tc.name][0], requests, rss[tc.name][1], runs, idle, loaded)
		}
		none, shared, isolated := rss["no filter"], rss["shared"], rss["isolate_vm"]
		extra := float64(filters*pool - pool)
		for i, when := range []string{"idle", "after requests"} {
			t.Logf("pool_size %d, %s: %d shared VMs cost %.1f MiB, %d isolated VMs %.1f MiB; sharing saves %.1f MiB, %.1f MiB per VM not started",
				pool, when, pool, shared[i]-none[i], filters*pool, isolated[i]-none[i], isolated[i]-shared[i], (isolated[i]-shared[i])/extra)
		}
	}
}

// measureVMs starts `weft proxy` with n no-op filters of pool VMs each
// (isolated or sharing), and returns its VmRSS once ready and after
// requests through it, in MiB.
func measureVMs(t *testing.T, pool, n int, isolate bool, requests int) (idle, loaded float64) {
	var pid int
	s := startScenario(t, Scenario{Name: "vm-rss", Setup: func(ctx context.Context, env *Env) (string, error) {
		module, err := buildNoopGuest(ctx, env)
		if err != nil {
			return "", err
		}
		up, err := env.StartUpstream(ctx, env.UpstreamConfig())
		if err != nil {
			return "", err
		}
		listen, p, err := env.startWeftFor(ctx, up, func(cfg *config.Config) {
			addFilters(cfg, n, func(i int) config.Filter {
				return config.Filter{Name: fmt.Sprintf("noop%d", i), Module: config.Module{Path: module}, PoolSize: pool, IsolateVM: isolate}
			})
		})
		if err != nil {
			return "", err
		}
		pid = p.PID()
		return "http://" + listen + "/", nil
	}})
	defer s.stop()
	idle = vmRSS(t, pid)
	codes, body := s.get(s.url, requests)
	s.wantOK(codes, body, requests)
	return idle, vmRSS(t, pid)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// vmRSS is pid's resident set now, in MiB.
func vmRSS(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			kib, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return float64(kib) / 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
