package cluster

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// TestMain fails the run when a goroutine outlives the tests by more than
// 10s (a Cluster or test server that did not stop).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settle{m}, leakOptions...)
}

// leakOptions exempt fasthttp's process-wide Date header updater, which
// never stops.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
}

// settle runs the tests and, when they pass, gives goroutines up to 10s to
// end before goleak's own short retries look for leaks.
type settle struct{ m *testing.M }

// Run runs the tests and waits for their goroutines to end.
func (s settle) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(10 * time.Second)
	for code == 0 && goleak.Find(leakOptions...) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}

// serve starts a real fasthttp server on 127.0.0.1:0 and returns its
// address; it stops when the test ends.
func serve(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A short worker idle time lets the pool's cleaner goroutine exit soon.
	s := &fasthttp.Server{Handler: h, CloseOnShutdown: true, IdleTimeout: time.Second, MaxIdleWorkerDuration: 50 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		_ = s.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		// Shutdown may run before Serve registered ln: close it too.
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// identity answers 200 with the server's own address in the body.
func identity(addr *string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(*addr) }
}

// statusServer answers every request with the status held in code.
func statusServer(t testing.TB, code *atomic.Int32) string {
	return serve(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(int(code.Load())) })
}

// closedAddr returns a loopback address nothing listens on for the whole
// test.
func closedAddr(t testing.TB) string { return testserver.RefusedAddr(t) }

// logger is a zap logger writing to the test log, at warn and above.
func logger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// start compiles and starts c for the test. A short idle timeout lets
// fasthttp's idle cleaners exit soon after the test.
func start(t testing.TB, c config.Cluster, o Options) *Cluster {
	t.Helper()
	if c.IdleTimeout == 0 {
		c.IdleTimeout = config.Duration(200 * time.Millisecond)
	}
	if o.Logger == nil {
		o.Logger = logger(t)
	}
	cl, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	cl.Start()
	t.Cleanup(cl.Close)
	return cl
}

// static lists addresses as weight-1 endpoints.
func static(addrs ...string) []config.Endpoint {
	eps := make([]config.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = config.Endpoint{Address: a}
	}
	return eps
}

// get sends GET path to e with a 5s deadline and returns the status.
func get(e *Endpoint, path string) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(path)
	req.Header.SetHost("upstream.test")
	err := e.Do(req, resp, time.Now().Add(5*time.Second))
	return resp.StatusCode(), err
}

// eventually polls cond every 10ms until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// endpointByAddr finds the current endpoint with address a.
// inView reports whether e is in the view the cluster balances over. An
// ejection's or a health check's flag changes before the view is rebuilt
// (outlier.go, healthcheck.go): a test that goes on at the flag alone may
// still pick from, or count usable endpoints in, the old view.
func inView(c *Cluster, e *Endpoint) bool {
	for _, h := range c.view.Load().hosts {
		if h == e {
			return true
		}
	}
	return false
}

func endpointByAddr(c *Cluster, a string) *Endpoint {
	for _, e := range c.view.Load().set.endpoints {
		if e.addr == a {
			return e
		}
	}
	return nil
}

// picks counts Pick results by address over n picks.
func picks(c *Cluster, n int) map[string]int {
	got := map[string]int{}
	for range n {
		if e := c.Pick(0, false, nil); e != nil {
			got[e.Address()]++
		} else {
			got["<nil>"]++
		}
	}
	return got
}
