package filters_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/examples/filters/internal/exbuild"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
)

// upstreamStatus is deliberately not 200: the filters copy the status they
// read from the response map into x-weft-example-status.
const upstreamStatus = 203

const sidecarYAML = `
filters:
  - name: example
    module: {path: "{{module}}"}
    root_id: "{{root_id}}"
    pool_size: 1
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [example]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: app, timeout: 10s}
clusters:
  - name: app
    endpoints: [{address: "{{upstream}}"}]
`

// TestExampleFilters builds every example filter with its language's
// toolchain and runs it in a real proxy in front of a real upstream: the
// upstream must see x-weft-example: <language>, and the client must get the
// same header and the status the filter read back from the response map.
// A missing toolchain skips that language with the command to install it.
func TestExampleFilters(t *testing.T) {
	for _, ex := range exbuild.Examples {
		t.Run(ex.Name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			wasm, err := ex.Build()
			if exbuild.IsSkip(err) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes, ready in %v", ex.Name, len(wasm), time.Since(start).Round(time.Millisecond))
			runExample(t, ex, wasm)
		})
	}
}

func runExample(t *testing.T, ex exbuild.Example, wasm []byte) {
	module := filepath.Join(t.TempDir(), ex.Name+".wasm")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t)
	// Logs are encoded as they are written: the host hands guest memory to
	// the logger, so a core that keeps fields (zaptest/observer) would see
	// that memory's later contents.
	var logs syncBuffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zapcore.InfoLevel)
	url := startProxy(t, zap.New(core), map[string]string{"module": module, "root_id": ex.RootID, "upstream": up.addr})

	c := &fasthttp.Client{}
	// Several requests: the VM, its allocator and its contexts are reused.
	const n = 3
	for i := 0; i < n; i++ {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI(url + "/hello")
		if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := resp.StatusCode(); got != upstreamStatus {
			t.Fatalf("request %d: status %d, want %d; body %q", i, got, upstreamStatus, resp.Body())
		}
		if got := string(resp.Header.Peek("x-weft-example")); got != ex.Name {
			t.Errorf("request %d: client saw x-weft-example %q, want %q", i, got, ex.Name)
		}
		if got, want := string(resp.Header.Peek("x-weft-example-status")), "203"; got != want {
			t.Errorf("request %d: client saw x-weft-example-status %q, want %q (the status the filter read)", i, got, want)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	seen := up.seenHeaders()
	if len(seen) != n {
		t.Fatalf("upstream saw %d requests, want %d", len(seen), n)
	}
	for i, h := range seen {
		if len(h) != 1 || h[0] != ex.Name {
			t.Errorf("upstream request %d: x-weft-example = %q, want exactly [%q]", i, h, ex.Name)
		}
	}
	// Every example logs one line through proxy_log when configured.
	wantLog := `"guest":"` + ex.Name + ` example filter configured"`
	if text := logs.String(); !strings.Contains(text, wantLog) {
		t.Errorf("no guest log line with %s; host logs:\n%s", wantLog, text)
	}
}

func startProxy(t *testing.T, log *zap.Logger, vars map[string]string) string {
	t.Helper()
	p, err := proxy.New(context.Background(), proxy.Options{Logger: log, DrainTimeout: 2 * time.Second,
		WasmCacheDir: filepath.Join(os.TempDir(), "weft-example-wazero")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	raw := sidecarYAML
	for k, v := range vars {
		raw = strings.ReplaceAll(raw, "{{"+k+"}}", v)
	}
	cfg, err := config.Parse("example.yaml", []byte(raw))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, raw)
	}
	if err := p.Apply(context.Background(), cfg, []byte(raw), ""); err != nil {
		t.Fatal(err)
	}
	return "http://" + p.ListenerAddr("main").String()
}

// upstream is a real fasthttp server on 127.0.0.1 that records the
// x-weft-example values of every request.
type upstream struct {
	addr string
	mu   sync.Mutex
	seen [][]string
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: ln.Addr().String()}
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: func(ctx *fasthttp.RequestCtx) {
		var vals []string
		for _, v := range ctx.Request.Header.PeekAll("x-weft-example") {
			vals = append(vals, string(v))
		}
		u.mu.Lock()
		u.seen = append(u.seen, vals)
		u.mu.Unlock()
		ctx.SetStatusCode(upstreamStatus)
		ctx.SetBodyString("hello from the upstream\n")
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return u
}

func (u *upstream) seenHeaders() [][]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]string(nil), u.seen...)
}

// syncBuffer is a bytes.Buffer safe for the proxy's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
