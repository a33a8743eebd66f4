package cluster

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/loopback"
)

// silentAddr is a loopback address whose connects hang: a socket that
// listens with no room in its accept queue (backlog 0, one connection
// queued and never accepted), so the kernel drops further SYNs, as a host
// that is slow to accept or a lost SYN does. It skips the test where
// connects to it do not hang.
func silentAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	filler, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = filler.Close() })
	if probe, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		_ = probe.Close()
		t.Skip("connects to a full accept queue do not hang here")
	}
	return addr
}

// A dial cut short by the request's own deadline (or its context), while
// connect_timeout still had time to run, is a timeout of the request: it
// is not a connect failure and is not held against the endpoint (outlier
// detection, the failure count). A dial that connect_timeout ended, or
// that was refused, still is the endpoint's connect failure.
func TestDialCutByTheRequestIsNotAnEndpointFailure(t *testing.T) {
	silent := silentAddr(t)
	refused, release, err := loopback.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	long := config.Duration(time.Minute)
	short := config.Duration(150 * time.Millisecond)
	od := &config.OutlierDetection{Consecutive5xx: 1}
	do := func(t *testing.T, addr string, protocol string, connect config.Duration, deadline time.Duration) (*Endpoint, error) {
		t.Helper()
		c := start(t, config.Cluster{Name: "cut", Endpoints: static(addr), Protocol: protocol, ConnectTimeout: connect,
			OutlierDetection: od, PanicThreshold: -1}, Options{})
		e := endpointByAddr(c, addr)
		if protocol == "" {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("/")
			req.Header.SetHost("upstream.test")
			err := e.Do(req, resp, time.Now().Add(deadline))
			e.Report(resp.StatusCode(), err)
			return e, err
		}
		// HTTP/2 (weft's own client): the dial runs under the request's
		// context, here cancelled by the caller, as the route timeout of
		// a stream does.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := time.AfterFunc(deadline, cancel)
		defer stop.Stop()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://upstream.test/", nil)
		resp, err := e.RoundTrip(req, true)
		if err == nil {
			_ = resp.Body.Close()
		}
		e.Report(0, err)
		return e, err
	}
	for _, tc := range []struct {
		name     string
		addr     string
		protocol string
		connect  config.Duration
		deadline time.Duration
		want     FailureKind
		counted  bool
	}{
		{"HTTP/1.1, cut by the request's deadline", silent, "", long, 150 * time.Millisecond, Timeout, false},
		{"HTTP/2, cut by the request's cancellation", silent, "http2", long, 150 * time.Millisecond, Timeout, false},
		{"HTTP/1.1, ended by connect_timeout", silent, "", short, time.Minute, ConnectFailure, true},
		{"HTTP/2, ended by connect_timeout", silent, "http2", short, time.Minute, ConnectFailure, true},
		{"HTTP/1.1, refused under a short deadline", refused, "", long, 150 * time.Millisecond, ConnectFailure, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := do(t, tc.addr, tc.protocol, tc.connect, tc.deadline)
			if err == nil {
				t.Fatal("the request succeeded")
			}
			if got := Classify(err); got != tc.want {
				t.Fatalf("%v: classified %v, want %v", err, got, tc.want)
			}
			if got := DialCut(err); got == tc.counted {
				t.Fatalf("%v: DialCut %v, want %v", err, got, !tc.counted)
			}
			failures, ejected := e.failures.Load(), e.ejected.Load()
			if tc.counted && failures != 1 {
				t.Fatalf("%v: the endpoint's failures %d, want 1", err, failures)
			}
			if !tc.counted && (failures != 0 || ejected) {
				t.Fatalf("%v: held against the endpoint: %d failures, ejected %v", err, failures, ejected)
			}
		})
	}
}
