package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// idleRSSEnv runs TestIdleRSS, which prints figures for
// docs/benchmarks.md rather than checking anything.
const idleRSSEnv = "WEFT_BENCH_IDLE_RSS"

// TestIdleRSS measures an idle `weft proxy`'s memory with no filter and
// with four no-op Go SDK filters (sharing their VMs, the default), for one
// or more weft binaries started side by side, so a before/after pair
// shares the machine's load:
//
//	WEFT_BENCH_IDLE_RSS=1 [WEFT_BENCH_IDLE_RSS_BINS=base=/tmp/weft-main,head=/tmp/weft] \
//	  [WEFT_BENCH_IDLE_RSS_GC_WAIT=130s] go test ./bench/ -run TestIdleRSS -v -timeout 20m
//
// Samples: 8 s after /ready; optionally after GC_WAIT more of idling (the
// Go runtime forces a GC every two minutes, and a GC maps back the parts
// of the executable it reads); after 2,000 requests through the filters
// and 5 s. Each sample is VmRSS and PSS, and RSS split into the
// executable's pages, anonymous executable memory (compiled Wasm code),
// other anonymous memory (Go heap, stacks, VM linear memories) and shared
// memory (Wasm data images).
func TestIdleRSS(t *testing.T) {
	if os.Getenv(idleRSSEnv) != "1" {
		t.Skip("figures only: set " + idleRSSEnv + "=1")
	}
	type bin struct{ name, path string }
	var bins []bin
	if s := os.Getenv(idleRSSEnv + "_BINS"); s != "" {
		for _, kv := range strings.Split(s, ",") {
			name, path, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("%s_BINS: %q is not NAME=PATH", idleRSSEnv, kv)
			}
			bins = append(bins, bin{name, path})
		}
	} else {
		bins = []bin{{"tree", weftForTest(t)}}
	}
	var gcWait time.Duration
	if s := os.Getenv(idleRSSEnv + "_GC_WAIT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s_GC_WAIT: %v", idleRSSEnv, err)
		}
		gcWait = d
	}
	type run struct {
		label string
		s     *started
		pid   int
		rows  []string
	}
	var runs []*run
	for _, b := range bins {
		for _, n := range []int{0, 4} {
			r := &run{label: fmt.Sprintf("%s, %d filters", b.name, n)}
			r.s = startIdleWeft(t, b.path, n, &r.pid)
			runs = append(runs, r)
		}
	}
	sample := func(when string) {
		for _, r := range runs {
			m := readMem(t, r.pid)
			r.rows = append(r.rows, fmt.Sprintf("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |", r.label, when,
				m.rss, m.pss, m.exe, m.anonExec, m.anon, m.shared))
		}
	}
	time.Sleep(8 * time.Second)
	sample("8 s after ready")
	if gcWait > 0 {
		time.Sleep(gcWait)
		sample(fmt.Sprintf("%v later (a forced GC)", gcWait))
	}
	const requests = 2000
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes, body := r.s.get(r.s.url, requests)
			if codes[200] != requests || len(body) != 128 {
				t.Errorf("%s: statuses %v, last body %d bytes", r.label, codes, len(body))
			}
		}()
	}
	wg.Wait()
	time.Sleep(5 * time.Second)
	sample(fmt.Sprintf("after %d requests, 5 s idle", requests))
	t.Log("| weft | when | VmRSS MiB | PSS MiB | executable's pages | compiled Wasm code | other anonymous | shared (data images) |")
	for _, r := range runs {
		for _, row := range r.rows {
			t.Log(row)
		}
	}
}

// startIdleWeft starts `weft proxy` (bin) with n no-op filters in front of
// the bench upstream and stores its pid.
func startIdleWeft(t *testing.T, bin string, n int, pid *int) *started {
	t.Helper()
	log := &pidLog{}
	r := testRunner(t, false, log)
	r.opts.WeftBin = bin
	sc := Scenario{Name: "idle-rss", Setup: func(ctx context.Context, env *Env) (string, error) {
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
				return config.Filter{Name: fmt.Sprintf("noop%d", i), Module: config.Module{Path: module}}
			})
		})
		if err != nil {
			return "", err
		}
		*pid = p.PID()
		return "http://" + listen + "/", nil
	}}
	env := &Env{Dir: t.TempDir(), Logger: r.opts.Logger, name: sc.Name, r: r}
	url, err := sc.Setup(context.Background(), env)
	if err != nil {
		env.close()
		t.Fatal(err)
	}
	s := &started{t: t, env: env, log: log, url: url}
	t.Cleanup(s.stop)
	return s
}

// memFigures is one process's memory in MiB, from /proc/PID/smaps.
type memFigures struct {
	rss, pss float64
	exe      float64 // the executable file's mappings
	anonExec float64 // anonymous executable mappings (compiled Wasm code)
	anon     float64 // other anonymous memory
	shared   float64 // shared memory (memfd data images)
}

func readMem(t *testing.T, pid int) memFigures {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m memFigures
	var kind *float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			name := strings.Join(fs[5:], " ")
			switch {
			case name == exe:
				kind = &m.exe
			case strings.HasPrefix(name, "/memfd:"):
				kind = &m.shared
			case name == "" && strings.Contains(fs[1], "x"):
				kind = &m.anonExec
			case name == "" || name == "[heap]" || name == "[stack]":
				kind = &m.anon
			default:
				kind = nil // shared libraries, vdso
			}
			continue
		}
		if len(fs) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(fs[1], 64)
		if err != nil {
			continue
		}
		switch fs[0] {
		case "Rss:":
			m.rss += kb / 1024
			if kind != nil {
				*kind += kb / 1024
			}
		case "Pss:":
			m.pss += kb / 1024
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
