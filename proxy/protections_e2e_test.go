package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// These tests guard protections that were once switched off with the rest
// of the suite still green (issue 21): each fails when its protection is
// removed.

// gatedUpstream answers 503 to everything, but holds its first n requests
// until all n have arrived (so the proxy sees n failures at once and asks
// for n retries at once) and holds every later request until Release. It
// makes "how many retries were let through together" a count, not a race.
type gatedUpstream struct {
	Addr string
	Hits atomic.Int64

	n       int64
	all     chan struct{}
	release chan struct{}
	once    sync.Once
}

func startGatedUpstream(t *testing.T, n int) *gatedUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedUpstream{Addr: ln.Addr().String(), n: int64(n), all: make(chan struct{}), release: make(chan struct{})}
	srv := &fasthttp.Server{NoDefaultServerHeader: true, CloseOnShutdown: true, Handler: func(ctx *fasthttp.RequestCtx) {
		switch h := g.Hits.Add(1); {
		case h < g.n:
			select {
			case <-g.all:
			case <-g.release:
			}
		case h == g.n:
			close(g.all)
		default:
			<-g.release
		}
		ctx.Error("unavailable", fasthttp.StatusServiceUnavailable)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		g.Release() // a held handler would block Shutdown
		_ = srv.Shutdown()
		_ = ln.Close()
	})
	return g
}

// Release lets every held and later request through.
func (g *gatedUpstream) Release() { g.once.Do(func() { close(g.release) }) }

// readAccessLog waits until the JSON access log at path has n lines and
// returns them.
func readAccessLog(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	eventually(t, 10*time.Second, fmt.Sprintf("%d access log lines", n), func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		lines = lines[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				return false // a line being written
			}
			lines = append(lines, m)
		}
		return len(lines) >= n
	})
	return lines
}

// countFlags counts access log lines by response_flags.
func countFlags(lines []map[string]any) map[string]int {
	n := map[string]int{}
	for _, l := range lines {
		f, _ := l["response_flags"].(string)
		n[f]++
	}
	return n
}

const retryGuardConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    access_log: {enabled: true, path: "{{log}}", fields: [path, status, response_flags]}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: budgeted
            match: {prefix: /budgeted}
            route:
              cluster: budgeted
              # At most one retry in flight: 1% of a few requests is 0, so
              # the minimum of 1 decides.
              retry: {attempts: 3, on: [5xx], backoff_base: 1ms, budget_percent: 1, budget_min_concurrency: 1}
          - name: breaker
            match: {prefix: /breaker}
            route:
              cluster: breaker
              # A budget too loose to matter: the breaker decides.
              retry: {attempts: 3, on: [5xx], backoff_base: 1ms, budget_min_concurrency: 100}
clusters:
  - name: budgeted
    endpoints: [{address: "{{up}}"}]
  - name: breaker
    endpoints: [{address: "{{up}}"}]
    circuit_breakers: {max_retries: 1}
`

// TestRetryGuardsBoundConcurrentRetries sends n requests at once to an
// upstream that fails them all together. Both the retry budget and the
// max_retries circuit breaker allow one retry in flight, so exactly one
// request retries (and keeps retrying once the upstream lets it through);
// the other n-1 get the upstream's 503 at once, and the refusals are counted.
// Without the guard all n retry together and the upstream sees more than
// n+1 requests before anything is released.
func TestRetryGuardsBoundConcurrentRetries(t *testing.T) {
	const n = 6
	const attempts = 3
	for _, tc := range []struct {
		path, cluster string
		metric        string
		labels        []string
		flags         string // response_flags of a refused retry
	}{
		{"/budgeted", "budgeted", "weft_retry_budget_exhausted_total", []string{"cluster", "budgeted"}, "-"},
		{"/breaker", "breaker", "weft_circuit_breaker_rejections_total", []string{"cluster", "breaker", "limit", "max_retries"}, "UO"},
	} {
		t.Run(tc.cluster, func(t *testing.T) {
			up := startGatedUpstream(t, n)
			logPath := filepath.Join(t.TempDir(), "access.log")
			p, url := startProxy(t, retryGuardConfig, map[string]string{"up": up.Addr, "log": logPath})

			ld := startLoad(t, n, 1, func(c *fasthttp.Client) string {
				if st, body, _ := get(t, c, url+tc.path); st != 503 {
					return fmt.Sprintf("%d %q, want the upstream's 503", st, body)
				}
				return ""
			})
			t.Cleanup(up.Release) // runs before the load's Stop waits for held requests
			// n-1 requests are refused a retry and answered; one retry is
			// held at the upstream. Without a guard, retries pile up there.
			eventually(t, 10*time.Second, "n-1 answers or a second retry", func() bool {
				return ld.Total() == n-1 || up.Hits.Load() > n+1
			})
			if h := up.Hits.Load(); h > n+1 {
				t.Fatalf("upstream saw %d requests for %d failing ones: more than one retry let through at once", h, n)
			}
			if v, _ := metricValue(t, p, tc.metric, tc.labels...); v != n-1 {
				t.Fatalf("%s%v = %v, want %d refused retries", tc.metric, tc.labels, v, n-1)
			}

			up.Release()
			eventually(t, 10*time.Second, "the retrying request to finish", func() bool { return ld.Total() == n })
			if f := ld.Failed(); f != 0 {
				t.Fatalf("%s", ld)
			}
			// The one admitted request used all its attempts, one at a time.
			if h := up.Hits.Load(); h != n+attempts {
				t.Fatalf("upstream saw %d requests, want %d first tries + %d retries", h, n, attempts)
			}
			if v, _ := metricValue(t, p, "weft_upstream_retries_total", "cluster", tc.cluster); v != attempts {
				t.Fatalf("weft_upstream_retries_total = %v, want %d", v, attempts)
			}
			flags := countFlags(readAccessLog(t, logPath, n))
			if flags[tc.flags] != n-1 || flags["URX"] != 1 {
				t.Fatalf("response flags %v, want %d × %q and 1 × URX", flags, n-1, tc.flags)
			}
		})
	}
}

const localReplyConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    access_log: {enabled: true, path: "{{log}}", fields: [path, status, response_flags]}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /unhealthy}
            route: {cluster: unhealthy, retry: {disabled: true}}
          - match: {prefix: /refused-retried}
            route:
              cluster: refused
              retry: {attempts: 2, on: [connect-failure], backoff_base: 1ms}
          - match: {prefix: /refused-default}
            route: {cluster: refused}
          - match: {prefix: /refused}
            route: {cluster: refused, retry: {disabled: true}}
clusters:
  - name: unhealthy
    endpoints: [{address: "{{up}}"}]
    panic_threshold: -1
    health_check: {interval: 20ms, timeout: 20ms, unhealthy_threshold: 1}
  - name: refused
    endpoints: [{address: "{{closed}}"}]
`

// closedAddr is a loopback address nothing listens on: connecting to it is
// refused at once, for the whole test.
func closedAddr(t *testing.T) string { return testserver.RefusedAddr(t) }

// TestLocalRepliesForMissingUpstream: a request the proxy cannot hand to an
// upstream gets Envoy's answers: 503 with a body saying why, the UH or UF
// response flag (plus URX when retried), and the failure counted by kind.
func TestLocalRepliesForMissingUpstream(t *testing.T) {
	up := testserver.Start(t, "up")
	up.Status.Store(500) // health checks fail
	logPath := filepath.Join(t.TempDir(), "access.log")
	p, url := startProxy(t, localReplyConfig, map[string]string{"up": up.Addr, "closed": closedAddr(t), "log": logPath})
	eventually(t, 10*time.Second, "the health check to take the endpoint out", func() bool {
		v, ok := metricValue(t, p, "weft_cluster_endpoints_healthy", "cluster", "unhealthy")
		return ok && v == 0
	})

	c := &fasthttp.Client{}
	cases := []struct {
		path, body, flags string
		kind              string
		failures          float64
		cluster           string
	}{
		{"/unhealthy", "no healthy upstream\n", "UH", "no_healthy_upstream", 1, "unhealthy"},
		{"/refused", "upstream connect error\n", "UF", "connect_failure", 1, "refused"},
		// Two retries: three connect failures in all.
		{"/refused-retried", "upstream connect error\n", "UF,URX", "connect_failure", 4, "refused"},
		// No retry policy: the default retries a connect failure twice.
		{"/refused-default", "upstream connect error\n", "UF,URX", "connect_failure", 7, "refused"},
	}
	for i, tc := range cases {
		st, body, _ := get(t, c, url+tc.path)
		if st != fasthttp.StatusServiceUnavailable || body != tc.body {
			t.Errorf("%s: %d %q, want 503 %q", tc.path, st, body, tc.body)
		}
		lines := readAccessLog(t, logPath, i+1)
		if l := lines[i]; l["path"] != tc.path || l["status"] != float64(503) || l["response_flags"] != tc.flags {
			t.Errorf("%s: access log %v, want status 503 and response_flags %q", tc.path, l, tc.flags)
		}
		if v, _ := metricValue(t, p, "weft_upstream_failures_total", "cluster", tc.cluster, "kind", tc.kind); v != tc.failures {
			t.Errorf("%s: weft_upstream_failures_total{kind=%q} = %v, want %v", tc.path, tc.kind, v, tc.failures)
		}
	}
	// Health checks reach it, but no request did.
	for _, path := range up.Paths() {
		if path == "/unhealthy" {
			t.Errorf("a request reached the unhealthy endpoint")
		}
	}
}
