package loadgen

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h2cServer serves HTTP/2 with prior knowledge only (an HTTP/1.1 request
// gets no answer it could parse as one), answering 505 to a request that
// did not come over HTTP/2, and counts connections and requests.
//
// The client dials a connection on the first request that needs it, so
// one fast worker could finish a run before another one has dialed. With
// holdConns set, the server holds every request until it has accepted that
// many connections (or the request is cancelled): each worker then gets
// its turn however the goroutines are scheduled, and a test can ask for an
// exact count.
type h2cServer struct {
	url      string
	conns    atomic.Int64
	requests atomic.Int64

	holdConns int64
	enough    chan struct{} // closed at holdConns connections
}

func startH2CServer(t *testing.T, status int, holdConns int64) *h2cServer {
	t.Helper()
	s := &h2cServer{holdConns: holdConns, enough: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.requests.Add(1)
			if s.holdConns > 0 {
				select {
				case <-s.enough:
				case <-r.Context().Done():
					return
				}
			}
			if r.ProtoMajor != 2 {
				w.WriteHeader(http.StatusHTTPVersionNotSupported)
				return
			}
			w.WriteHeader(status)
			_, _ = w.Write(make([]byte, 64))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew && s.conns.Add(1) == s.holdConns {
				close(s.enough)
			}
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() { _ = srv.Close(); wg.Wait() })
	s.url = "http://" + ln.Addr().String() + "/"
	return s
}

// H2C puts Connections requests in flight on exactly Conns HTTP/2
// connections, and counts every answer the server gave.
func TestH2CSharesConns(t *testing.T) {
	srv := startH2CServer(t, http.StatusOK, 3)
	res, err := Run(context.Background(), Config{
		Name: "h2c", URL: srv.url, Protocol: H2C, Connections: 6, Conns: 3,
		Duration: time.Minute, MaxRequests: 300,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors.Total() != 0 || res.Status.C2xx != 300 || res.Requests != 300 || res.Latency.TotalCount() != 300 {
		t.Fatalf("requests %d, errors %+v, statuses %+v, histogram %d: want 300 answered 2xx (505 means not HTTP/2)",
			res.Requests, res.Errors, res.Status, res.Latency.TotalCount())
	}
	if got := srv.requests.Load(); got != res.Requests+res.WarmupRequests {
		t.Fatalf("server answered %d, generator counted %d+%d", got, res.Requests, res.WarmupRequests)
	}
	if got := srv.conns.Load(); got != 3 {
		t.Fatalf("%d connections, want 3", got)
	}
}

// More Conns than requests in flight would leave connections idle: there
// are at most Connections; statuses are counted as with HTTP/1.1.
func TestH2CConnsAtMostConnectionsAndStatuses(t *testing.T) {
	srv := startH2CServer(t, http.StatusServiceUnavailable, 2)
	res, err := Run(context.Background(), Config{
		URL: srv.url, Protocol: H2C, Connections: 2, Conns: 8, Duration: time.Minute, MaxRequests: 40,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.C5xx != 40 || res.Errors.Total() != 0 {
		t.Fatalf("statuses %+v, errors %+v, want 40 5xx", res.Status, res.Errors)
	}
	// Both workers dial (the server holds requests until they have); none
	// of the other 6 Conns, which would be idle.
	if got := srv.conns.Load(); got != 2 {
		t.Fatalf("%d connections, want 2 (one per worker, at most Connections)", got)
	}
}

func TestH2CConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "https://127.0.0.1:1/", Protocol: H2C, Duration: time.Second},
		{URL: "http://127.0.0.1:1/", Protocol: "spdy", Duration: time.Second},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
