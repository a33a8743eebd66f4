package cluster

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

func TestRequestAndRetryBreakers(t *testing.T) {
	c := start(t, config.Cluster{Name: "cb", Endpoints: static("127.0.0.1:1"),
		CircuitBreakers: config.CircuitBreakers{MaxRequests: 3, MaxRetries: 2}}, Options{})
	kinds := []struct {
		name     string
		limit    int
		acquire  func() bool
		release  func()
		rejected func() uint64
	}{
		{"requests", 3, c.AcquireRequest, c.ReleaseRequest, c.Stats().RejectedRequests.Load},
		{"retries", 2, c.AcquireRetry, c.ReleaseRetry, c.Stats().RejectedRetries.Load},
	}
	for _, k := range kinds {
		for i := range k.limit {
			if !k.acquire() {
				t.Fatalf("%s: acquire %d of %d refused", k.name, i+1, k.limit)
			}
		}
		for range 4 {
			if k.acquire() {
				t.Fatalf("%s: acquire past the limit admitted", k.name)
			}
		}
		if got := k.rejected(); got != 4 {
			t.Fatalf("%s: %d rejections counted, want 4", k.name, got)
		}
		k.release()
		if !k.acquire() {
			t.Fatalf("%s: acquire after a release refused", k.name)
		}
		for range k.limit {
			k.release()
		}
	}
	if st := c.Status(); st.Requests != 0 || st.Retries != 0 {
		t.Fatalf("counts after releases: %+v", st)
	}
}

func TestBreakersConcurrent(t *testing.T) {
	c := start(t, config.Cluster{Name: "cb", Endpoints: static("127.0.0.1:1"),
		CircuitBreakers: config.CircuitBreakers{MaxRequests: 5}}, Options{})
	var mu sync.Mutex
	inFlight, peak := 0, 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if !c.AcquireRequest() {
					continue
				}
				mu.Lock()
				inFlight++
				peak = max(peak, inFlight)
				mu.Unlock()
				mu.Lock()
				inFlight--
				mu.Unlock()
				c.ReleaseRequest()
			}
		}()
	}
	wg.Wait()
	if peak > 5 {
		t.Fatalf("%d requests admitted at once, limit 5", peak)
	}
	if c.Status().Requests != 0 {
		t.Fatalf("count leaked: %d", c.Status().Requests)
	}
}

// blockingServer holds every request until release (or the test's end).
func blockingServer(t *testing.T) (addr string, release func()) {
	ch := make(chan struct{})
	addr = serve(t, func(ctx *fasthttp.RequestCtx) { <-ch })
	release = sync.OnceFunc(func() { close(ch) })
	t.Cleanup(release) // runs before the server's shutdown
	return addr, release
}

func TestMaxPending(t *testing.T) {
	addr, release := blockingServer(t)
	c := start(t, config.Cluster{Name: "cb", Endpoints: static(addr), MaxConnsPerEndpoint: 1,
		CircuitBreakers: config.CircuitBreakers{MaxPending: 1}}, Options{})
	e := c.Pick(0, false, nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = get(e, "/")
		}()
	}
	// One request holds the only connection, one waits for it.
	eventually(t, "one active and one pending", func() bool { return e.Active() == 2 && c.Status().Pending == 1 })
	_, err := get(e, "/")
	if !errors.Is(err, ErrOverflow) || Classify(err) != Overflow {
		t.Fatalf("third request: %v (%v), want overflow", err, Classify(err))
	}
	if got := c.Stats().RejectedPending.Load(); got != 1 {
		t.Fatalf("pending rejections %d", got)
	}
	if e.Active() != 2 || c.Status().Pending != 1 {
		t.Fatalf("a rejected request changed the counts: active %d pending %d", e.Active(), c.Status().Pending)
	}
}

func TestMaxPendingWaitsThenTimesOut(t *testing.T) {
	addr, release := blockingServer(t)
	c := start(t, config.Cluster{Name: "cb", Endpoints: static(addr), MaxConnsPerEndpoint: 1}, Options{})
	e := c.Pick(0, false, nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = get(e, "/")
	}()
	eventually(t, "one active", func() bool { return e.Conns() == 1 && e.Active() == 1 })
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("/")
	err := e.Do(req, resp, time.Now().Add(50*time.Millisecond))
	if Classify(err) != Timeout {
		t.Fatalf("waiting past the deadline: %v (%v), want timeout", err, Classify(err))
	}
	if c.Status().Pending != 0 {
		t.Fatalf("pending %d after the waiter left", c.Status().Pending)
	}
}

func TestMaxConnections(t *testing.T) {
	a, release := blockingServer(t)
	b, releaseB := blockingServer(t)
	defer releaseB()
	c := start(t, config.Cluster{Name: "cb", Endpoints: static(a, b),
		CircuitBreakers: config.CircuitBreakers{MaxConnections: 1}}, Options{})
	ea, eb := endpointByAddr(c, a), endpointByAddr(c, b)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = get(ea, "/")
	}()
	eventually(t, "a connection to a", func() bool { return ea.Conns() == 1 })
	_, err := get(eb, "/")
	if !errors.Is(err, ErrOverflow) || Classify(err) != Overflow {
		t.Fatalf("second connection: %v (%v), want overflow", err, Classify(err))
	}
	st := c.Stats()
	if st.RejectedConnections.Load() != 1 || st.ConnectionsOpened.Load() != 1 {
		t.Fatalf("rejected %d, opened %d", st.RejectedConnections.Load(), st.ConnectionsOpened.Load())
	}
	if c.Status().Connections != 1 {
		t.Fatalf("connections %d", c.Status().Connections)
	}
}
