package cluster

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// silentAddr is a loopback address whose connects hang: a socket that
// listens with no room in its accept queue (backlog 0, one connection
// queued and never accepted), so the kernel drops further SYNs, as a host
// that vanished without a reset does (testserver.SlowConnect, never
// opened). It skips the test where connects to
// it do not hang.
func silentAddr(t *testing.T) string {
	t.Helper()
	return testserver.StartSlowConnect(t).Addr // never opened: every connect hangs
}

// A dial to an endpoint that does not answer ends with the request that
// needed it, long before connect_timeout (here a minute), and counts as
// the endpoint's connect failure whatever ended it: a silent endpoint is
// retried elsewhere and ejected, not waited on by every request. Before,
// a cancelled HTTP/2 request's dial ran to connect_timeout.
func TestDialEndsWithItsRequest(t *testing.T) {
	silent := silentAddr(t)
	od := &config.OutlierDetection{Consecutive5xx: 1}
	for _, protocol := range []string{"", "http2"} {
		name := protocol
		if name == "" {
			name = "http1"
		}
		t.Run(name, func(t *testing.T) {
			c := start(t, config.Cluster{Name: "silent", Endpoints: static(silent), Protocol: protocol,
				ConnectTimeout: config.Duration(time.Minute), OutlierDetection: od, PanicThreshold: -1}, Options{})
			e := endpointByAddr(c, silent)
			done := make(chan error, 1)
			go func() {
				if protocol == "" {
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					req.SetRequestURI("/")
					req.Header.SetHost("upstream.test")
					done <- e.Do(req, resp, time.Now().Add(150*time.Millisecond))
					return
				}
				// Weft's HTTP/2 client dials under the request's context,
				// which the route timeout or the client cancels.
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				time.AfterFunc(150*time.Millisecond, cancel)
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://upstream.test/", nil)
				resp, err := e.RoundTrip(req, true)
				if err == nil {
					_ = resp.Body.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the dial outlived its request by 30 s (connect_timeout is a minute)")
			}
			if err == nil {
				t.Fatal("the request succeeded")
			}
			if got := Classify(err); got != ConnectFailure {
				t.Fatalf("%v: classified %v, want a connect failure", err, got)
			}
			e.Report(0, err)
			if f := e.failures.Load(); f != 1 {
				t.Fatalf("%v: the endpoint's failures %d, want 1", err, f)
			}
		})
	}
}
