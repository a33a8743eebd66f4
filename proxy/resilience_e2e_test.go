package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const resilienceConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: retried
            match: {prefix: /retry}
            route:
              cluster: flaky
              retry: {attempts: 3, on: [5xx, connect-failure, reset], backoff_base: 1ms}
          - name: plain
            match: {prefix: /plain}
            route: {cluster: flaky}
          - name: slow
            match: {prefix: /slow}
            route: {cluster: slow, timeout: 100ms}
          - name: pertry
            match: {prefix: /pertry}
            route:
              cluster: slowpair
              timeout: 5s
              retry: {attempts: 2, on: [5xx], per_try_timeout: 500ms, backoff_base: 1ms}
          - name: guarded
            match: {prefix: /guarded}
            route: {cluster: guarded}
          - name: pair
            match: {prefix: /pair}
            route:
              cluster: pair
              retry: {attempts: 2, on: [connect-failure, reset, 5xx], backoff_base: 1ms}
clusters:
  - name: flaky
    endpoints: [{address: "{{flaky}}"}]
  - name: slow
    endpoints: [{address: "{{slow}}"}]
  - name: slowpair
    lb: round_robin
    endpoints: [{address: "{{slow}}"}, {address: "{{fast}}"}]
  - name: guarded
    endpoints: [{address: "{{slow}}"}]
    circuit_breakers: {max_requests: 2}
  - name: pair
    endpoints: [{address: "{{a}}"}, {address: "{{b}}"}]
    outlier_detection: {consecutive_5xx: 3, interval: 50ms, base_ejection_time: 300ms, max_ejection_percent: 50}
`

type resilienceEnv struct {
	flaky, slow, fast, a, b *testserver.Upstream
	url                     string
	p                       *Proxy
}

func startResilience(t *testing.T) *resilienceEnv {
	e := &resilienceEnv{
		flaky: testserver.Start(t, "flaky"), slow: testserver.Start(t, "slow"), fast: testserver.Start(t, "fast"),
		a: testserver.Start(t, "a"), b: testserver.Start(t, "b"),
	}
	e.p, e.url = startProxy(t, resilienceConfig, map[string]string{
		"flaky": e.flaky.Addr, "slow": e.slow.Addr, "fast": e.fast.Addr, "a": e.a.Addr, "b": e.b.Addr})
	return e
}

func TestRetriesTurnFailuresIntoSuccess(t *testing.T) {
	e := startResilience(t)
	c := &fasthttp.Client{}
	e.flaky.FailFirst.Store(2)
	if st, body, _ := get(t, c, e.url+"/retry"); st != 200 || body != "flaky" {
		t.Fatalf("with retries: %d %q, want 200 after two failures", st, body)
	}
	if e.flaky.Hits.Load() != 3 {
		t.Fatalf("upstream saw %d tries, want 3", e.flaky.Hits.Load())
	}
	e.flaky.FailFirst.Store(1)
	if st, _, _ := get(t, c, e.url+"/plain"); st != 503 {
		t.Fatalf("without retries: %d, want the upstream's 503", st)
	}
	// More failures than attempts: the client gets the last upstream answer.
	e.flaky.FailFirst.Store(10)
	if st, _, _ := get(t, c, e.url+"/retry"); st != 503 {
		t.Fatalf("exhausted retries: %d, want 503", st)
	}
	e.flaky.FailFirst.Store(0)
	// POST is not idempotent: not retried by default.
	e.flaky.FailFirst.Store(1)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI(e.url + "/retry")
	req.Header.SetMethod("POST")
	req.SetBodyString("x")
	if err := c.Do(req, resp); err != nil || resp.StatusCode() != 503 {
		t.Fatalf("POST retried or failed: %v %d", err, resp.StatusCode())
	}
}

func TestRouteTimeoutAndPerTryTimeout(t *testing.T) {
	e := startResilience(t)
	c := &fasthttp.Client{}
	// Slow enough for both timeouts; the fast endpoint has the per-try
	// timeout's 500ms to answer, which a busy machine still meets.
	e.slow.Delay.Store(int64(2 * time.Second))
	st, _, h := get(t, c, e.url+"/slow")
	if st != 504 {
		t.Fatalf("route timeout: %d, want 504", st)
	}
	_ = h
	// per-try timeout: the slow endpoint times out, the retry goes to the
	// other endpoint and succeeds inside the route timeout.
	ok := 0
	for i := 0; i < 4; i++ {
		if st, body, _ := get(t, c, e.url+"/pertry"); st == 200 && body == "fast" {
			ok++
		}
	}
	if ok != 4 {
		t.Fatalf("per-try timeout + retry: %d of 4 succeeded", ok)
	}
}

func TestCircuitBreakerRejectsPastLimit(t *testing.T) {
	e := startResilience(t)
	// The upstream holds the requests it gets until the rejections are in:
	// with a fixed delay, a request that starts late on a busy machine
	// could find a slot already freed.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)        // runs after the release below, whatever the outcome
	release := e.slow.Hold(t) // (cleanups run last registered first)
	var ok, rejected, other atomic.Int64
	var why atomic.Value
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, h := get(t, &fasthttp.Client{}, e.url+"/guarded")
			switch {
			case st == 200:
				ok.Add(1)
			case st == 503 && h != nil && len(h.Peek(overflowHeader)) > 0:
				rejected.Add(1)
				why.Store(string(h.Peek(overflowHeader)))
			default:
				other.Add(1)
			}
		}()
	}
	eventually(t, 10*time.Second, "four requests answered while two are held", func() bool { return rejected.Load()+other.Load() >= 4 })
	release()
	wg.Wait()
	if ok.Load() != 2 || rejected.Load() != 4 || other.Load() != 0 {
		t.Fatalf("max_requests 2 with 6 concurrent: ok=%d rejected=%d other=%d", ok.Load(), rejected.Load(), other.Load())
	}
	if why.Load() != "max_requests" {
		t.Fatalf("overflow header says %v", why.Load())
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	e := startResilience(t)
	c := &fasthttp.Client{}
	e.a.Status.Store(500)
	// Retries hide the failures from the client while a gets ejected.
	for i := 0; i < 30; i++ {
		if st, body, _ := get(t, c, e.url+"/pair"); st != 200 || body != "b" {
			t.Fatalf("request %d: %d %q", i, st, body)
		}
	}
	hitsA := e.a.Hits.Load()
	for i := 0; i < 30; i++ {
		get(t, c, e.url+"/pair")
	}
	if e.a.Hits.Load() != hitsA {
		t.Fatalf("ejected endpoint still got %d requests", e.a.Hits.Load()-hitsA)
	}
	// It heals; after the ejection time it is back in rotation.
	e.a.Status.Store(0)
	eventually(t, 5*time.Second, "the ejected endpoint to return", func() bool {
		get(t, c, e.url+"/pair")
		return e.a.Hits.Load() > hitsA
	})
}

func TestKillEndpointUnderLoadNoClientErrors(t *testing.T) {
	e := startResilience(t)
	ld := startLoad(t, 8, 2000, func(c *fasthttp.Client) string {
		if st, body, _ := get(t, c, e.url+"/pair"); st != 200 {
			return fmt.Sprintf("%d %q", st, body)
		}
		return ""
	})
	eventually(t, 5*time.Second, "load to start", func() bool { return ld.Total() > 200 })
	e.a.Stop()
	n := ld.Total()
	eventually(t, 10*time.Second, "more load after the kill", func() bool { return ld.Total() > n+500 })
	if ld.Failed() != 0 {
		t.Fatalf("after killing one endpoint: %s", ld)
	}
}

// An upstream that closes after its headers and part of its body: the
// response has begun (its headers streamed to the client), so, as with
// Envoy, the client's connection is closed rather than answered 502.
func TestUpstreamClosesMidResponse(t *testing.T) {
	e := startResilience(t)
	c := &fasthttp.Client{}
	e.flaky.CutMidResponse.Store(true)
	if st, body, _ := get(t, c, e.url+"/plain"); st != 0 {
		t.Fatalf("cut response: %d %q, want a broken response", st, body)
	}
	// Only that client: the next request is fine.
	e.flaky.CutMidResponse.Store(false)
	if st, _, _ := get(t, c, e.url+"/plain"); st != 200 {
		t.Fatalf("after a cut response: %d", st)
	}
}
