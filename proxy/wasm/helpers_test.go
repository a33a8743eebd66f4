package wasm

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

var (
	watMu    sync.Mutex
	watCache = map[string][]byte{}
)

// wat compiles testdata/<name>.wat with wabt's wat2wasm (once per run).
func wat(t testing.TB, name string) []byte {
	t.Helper()
	watMu.Lock()
	defer watMu.Unlock()
	if b, ok := watCache[name]; ok {
		return b
	}
	bin, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm (wabt) is not installed: apt-get install -y wabt")
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	if b, err := exec.Command(bin, filepath.Join("testdata", name+".wat"), "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	watCache[name] = b
	return b
}

// newRuntime builds a Runtime closed at the end of the test.
func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	var log *zap.Logger
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		log = zaptest.NewLogger(tt)
	}
	if tb, ok := t.(*testing.B); ok {
		// A benchmark's stream that fails says why (a stopped call's
		// error lists how the watchdog counted it).
		log = zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	}
	rt, err := NewRuntime(context.Background(), RuntimeOptions{Logger: log, CacheDir: guestbuild.CompileCacheDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// load loads a plugin and closes it (waiting) at the end of the test.
func load(t testing.TB, rt *Runtime, spec PluginSpec, env Env) *Plugin {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "test"
	}
	if spec.PoolSize == 0 {
		spec.PoolSize = 1
	}
	p, err := rt.Load(context.Background(), spec, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { closeAndWait(p) })
	return p
}

// closeAndWait closes p and waits for it to drain.
func closeAndWait(p *Plugin) {
	if p.closing.CompareAndSwap(false, true) {
		p.drainAndClose()
	}
}

// newStream is a stream for GET uri with the given request headers.
func newStream(uri string, hdrs ...string) *filter.Stream {
	s := &filter.Stream{
		Request:     &fasthttp.Request{},
		Response:    &fasthttp.Response{},
		ID:          []byte("req-1"),
		StartTime:   time.Now(),
		ConnID:      7,
		Source:      &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 40000},
		Destination: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080},
		Direction:   "inbound",
		Listener:    "in",
	}
	s.Request.SetRequestURI(uri)
	s.Request.Header.SetHost("svc.local")
	for i := 0; i+1 < len(hdrs); i += 2 {
		s.Request.Header.Add(hdrs[i], hdrs[i+1])
	}
	return s
}

// outcome records what the chain saw.
type outcome struct {
	req, resp filter.Status
	upstream  bool // the request reached the (simulated) upstream
}

// runStream drives one stream through f the way the chain does: request
// headers (and body), the upstream (200 "upstream" unless a filter replied),
// response headers and body, log, done.
func runStream(p *Plugin, s *filter.Stream) outcome {
	var o outcome
	f := p.NewStreamFilter(s)
	if f == nil {
		o.upstream = true
		s.Response.SetStatusCode(200)
		s.Response.SetBodyString("upstream")
		return o
	}
	body := len(s.Request.Body()) > 0
	o.req = f.OnRequestHeaders(s, !body)
	if o.req == filter.Continue && body {
		o.req = f.OnRequestBody(s, true)
	}
	if o.req == filter.Continue {
		o.upstream = true
		s.Response.SetStatusCode(200)
		s.Response.Header.Set("Content-Type", "text/plain")
		s.Response.SetBodyString("upstream")
	}
	o.resp = f.OnResponseHeaders(s, len(s.Response.Body()) == 0)
	if o.resp == filter.Continue && len(s.Response.Body()) > 0 {
		o.resp = f.OnResponseBody(s, true)
	}
	f.OnLog(s)
	f.OnDone(s)
	return o
}

// waitFor polls cond (bounded) and reports whether it became true.
func waitFor(cond func() bool) bool {
	for i := 0; i < 500; i++ {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// eventuallyTrue polls cond until it holds or max passes.
func eventuallyTrue(t *testing.T, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, max)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
