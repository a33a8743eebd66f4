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
	if len(got.Routes) != len(want) || got.Routes[0] != want[0] || got.Routes[1] != want[1] || got.At.IsZero() {
		t.Fatalf("/ui/stats = %+v, want %+v", got, want)
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
