package admin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/telemetry"
)

// source is a Source whose readiness the test flips; the dumps are fixed
// values, to see that they are served as JSON unchanged.
type source struct{ ready atomic.Bool }

func (s *source) Ready() bool { return s.ready.Load() }
func (s *source) ConfigDump() any {
	return map[string]any{"version": "v7", "rejected": nil}
}
func (s *source) Clusters() any {
	return []map[string]any{{"name": "orders", "endpoints": []string{"10.0.0.1:80"}}}
}

// startAdmin starts a real admin server on 127.0.0.1:0 with real metrics.
func startAdmin(t *testing.T) (*source, *telemetry.Metrics, string) {
	t.Helper()
	src, m := &source{}, telemetry.NewMetrics()
	s, err := Start("127.0.0.1:0", src, m.Registry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return src, m, "http://" + s.Addr().String()
}

func fetch(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestReadyFollowsTheSource(t *testing.T) {
	src, _, url := startAdmin(t)
	if st, _, body := fetch(t, url+"/ready"); st != 503 || body != "not ready\n" {
		t.Fatalf("before a config: %d %q, want 503", st, body)
	}
	// Liveness does not depend on a config.
	if st, _, body := fetch(t, url+"/healthz"); st != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", st, body)
	}
	src.ready.Store(true)
	if st, _, body := fetch(t, url+"/ready"); st != 200 || body != "ready\n" {
		t.Fatalf("ready: %d %q", st, body)
	}
}

func TestDumpsAreJSON(t *testing.T) {
	_, _, url := startAdmin(t)
	for _, tc := range []struct {
		path string
		want string
	}{
		{"/config_dump", `{"rejected":null,"version":"v7"}`},
		{"/clusters", `[{"endpoints":["10.0.0.1:80"],"name":"orders"}]`},
	} {
		st, h, body := fetch(t, url+tc.path)
		if st != 200 || h.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", tc.path, st, h.Get("Content-Type"))
		}
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%s: %v\n%s", tc.path, err, body)
		}
		if got, _ := json.Marshal(v); string(got) != tc.want {
			t.Fatalf("%s = %s, want %s", tc.path, got, tc.want)
		}
	}
}

func TestPrometheusAndUIStats(t *testing.T) {
	_, m, url := startAdmin(t)
	m.Route("in", "orders", "orders-v1").Record(200, time.Millisecond)
	m.Route("in", "orders", "orders-v1").Record(503, time.Millisecond)
	m.Route("in", "orders", "orders-v1").Record(200, time.Millisecond)
	m.Route("in", "cart", "cart").Record(404, time.Millisecond)

	st, _, body := fetch(t, url+"/stats/prometheus")
	if st != 200 || !strings.Contains(body, `weft_requests_total{cluster="orders-v1",code_class="5xx",listener="in",route="orders"} 1`) {
		t.Fatalf("/stats/prometheus: %d\n%s", st, body)
	}

	st, _, body = fetch(t, url+"/ui/stats")
	if st != 200 {
		t.Fatalf("/ui/stats: %d %s", st, body)
	}
	var got UIStats
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	// Sorted by listener, route, cluster; errors are the 5xx only.
	want := []RouteTraffic{
		{Listener: "in", Route: "cart", Cluster: "cart", Requests: 1, Errors: 0},
		{Listener: "in", Route: "orders", Cluster: "orders-v1", Requests: 3, Errors: 1},
	}
	if len(got.Routes) != len(want) || got.At.IsZero() {
		t.Fatalf("/ui/stats = %+v, want %+v", got, want)
	}
	for i, w := range want {
		g := got.Routes[i]
		// The first poll already has a rate (since the admin server
		// started) and a latency: 1ms lies in the (0.5ms, 1ms] bucket.
		if g.Listener != w.Listener || g.Route != w.Route || g.Cluster != w.Cluster || g.Requests != w.Requests || g.Errors != w.Errors ||
			g.RequestsPerSecond <= 0 || g.P50Ms <= 0.5 || g.P50Ms > 1 || g.P99Ms < g.P50Ms || g.P99Ms > 1 || g.LatencyWindow == "" {
			t.Errorf("/ui/stats route %d = %+v, want %+v with a rate and p50/p99 in (0.5, 1] ms", i, g, w)
		}
	}

	st, h, body := fetch(t, url+"/ui")
	if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(body, "/ui/stats") {
		t.Fatalf("/ui: %d %s, page does not read /ui/stats", st, h.Get("Content-Type"))
	}
}

func TestIndexAndUnknownPaths(t *testing.T) {
	_, _, url := startAdmin(t)
	st, _, body := fetch(t, url+"/")
	if st != 200 {
		t.Fatalf("/: %d", st)
	}
	// Every path the index lists is served.
	for _, p := range strings.Split(strings.TrimSpace(body), "\n")[1:] {
		if st, _, _ := fetch(t, url+p); st != 200 && st != 503 {
			t.Errorf("index lists %s, which answers %d", p, st)
		}
	}
	if st, _, _ := fetch(t, url+"/nope"); st != 404 {
		t.Errorf("/nope: %d, want 404", st)
	}
}

func TestStartRefusesABusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if s, err := Start(ln.Addr().String(), &source{}, telemetry.NewMetrics().Registry(), zap.NewNop()); err == nil || !strings.HasPrefix(err.Error(), "admin: ") {
		if s != nil {
			_ = s.Close(context.Background())
		}
		t.Fatalf("busy address: %v, want an admin: error", err)
	}
}

func TestCloseStopsServing(t *testing.T) {
	src, m := &source{}, telemetry.NewMetrics()
	s, err := Start("127.0.0.1:0", src, m.Registry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("still accepting after Close")
	}
}

// TestUIStatsRateWindow steps a clock through polls: the first poll has a
// rate since the start, polls closer than rateWindow share one base, and
// the base moves on once the newer sample is rateWindow old; latency is
// over the window, or since the start when the window saw no request.
func TestUIStatsRateWindow(t *testing.T) {
	m := telemetry.NewMetrics()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	u := newUIStats(m.Registry(), func() time.Time { return at })
	r := m.Route("in", "orders", "orders")
	read := func() RouteTraffic {
		t.Helper()
		st, err := u.read()
		if err != nil || len(st.Routes) != 1 {
			t.Fatalf("read: %v %+v", err, st)
		}
		return st.Routes[0]
	}
	for i := 0; i < 10; i++ {
		r.Record(200, 2*time.Millisecond)
	}
	at = at.Add(time.Second)
	if g := read(); g.RequestsPerSecond != 10 || g.LatencyWindow != "window" || g.P99Ms <= 1 || g.P99Ms > 2.5 {
		t.Fatalf("first poll, 1s after the start: %+v, want 10 req/s and p99 in (1, 2.5] ms", g)
	}
	at = at.Add(time.Second) // 2s: the newer sample becomes this one
	if g := read(); g.RequestsPerSecond != 5 {
		t.Fatalf("2s after the start: %v req/s, want 5", g.RequestsPerSecond)
	}
	for i := 0; i < 20; i++ {
		r.Record(200, 200*time.Millisecond)
	}
	at = at.Add(500 * time.Millisecond) // base still the start
	if g := read(); g.RequestsPerSecond != 30/2.5 {
		t.Fatalf("2.5s: %v req/s, want 12", g.RequestsPerSecond)
	}
	at = at.Add(1500 * time.Millisecond) // 4s: base moves to the 2s sample
	if g := read(); g.RequestsPerSecond != 20.0/2 || g.P50Ms < 100 || g.P50Ms > 250 {
		t.Fatalf("4s: %+v, want 10 req/s over [2s, 4s] and p50 in [100, 250] ms", g)
	}
	at = at.Add(2 * time.Second) // 6s: base is the 4s sample, no request since
	if g := read(); g.RequestsPerSecond != 0 || g.LatencyWindow != "since_start" || g.P50Ms < 100 {
		t.Fatalf("6s: %+v, want 0 req/s and latency since the start", g)
	}
}
