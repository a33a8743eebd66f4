package e2e

import (
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
	"go.uber.org/zap/zaptest"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
)

// Upstream is a real HTTP server on 127.0.0.1 that records the requests it
// receives.
type Upstream struct {
	Addr string
	Name string

	mu   sync.Mutex
	seen []Seen
}

// Seen is a request as the upstream read it.
type Seen struct {
	Method, Path string
	Headers      map[string]string // lower-case names, last value
}

// StartUpstream serves handler (nil: 200 with the upstream's name as body
// and an x-upstream header) until the test ends.
func StartUpstream(t testing.TB, name string, handler fasthttp.RequestHandler) *Upstream {
	t.Helper()
	u := &Upstream{Name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Addr = ln.Addr().String()
	srv := &fasthttp.Server{NoDefaultServerHeader: true, Handler: func(ctx *fasthttp.RequestCtx) {
		s := Seen{Method: string(ctx.Method()), Path: string(ctx.RequestURI()), Headers: map[string]string{}}
		for k, v := range ctx.Request.Header.All() {
			s.Headers[strings.ToLower(string(k))] = string(v)
		}
		u.mu.Lock()
		u.seen = append(u.seen, s)
		u.mu.Unlock()
		if handler != nil {
			handler(ctx)
			return
		}
		ctx.Response.Header.Set("x-upstream", name)
		ctx.SetBodyString(name)
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return u
}

// Seen returns the requests received so far.
func (u *Upstream) Seen() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.seen...)
}

// Last returns the last request received (zero Seen when none).
func (u *Upstream) Last() Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return Seen{}
	}
	return u.seen[len(u.seen)-1]
}

// WriteModule writes wasm to a file in the test's temp dir and returns its
// absolute path.
func WriteModule(t testing.TB, name string, wasm []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(path, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// StartProxy applies yamlText ({{key}} replaced from vars) to a new proxy
// and returns it with the URL of its listener named listener. It is shut
// down when the test ends. WEFT_TEST_LOG=1 shows its logs.
func StartProxy(t testing.TB, yamlText string, vars map[string]string, listener string) (*proxy.Proxy, string) {
	t.Helper()
	log := zap.NewNop()
	if os.Getenv("WEFT_TEST_LOG") != "" {
		log = zaptest.NewLogger(t)
	}
	p, err := proxy.New(context.Background(), proxy.Options{Logger: log, DrainTimeout: 2 * time.Second,
		WasmCacheDir: filepath.Join(os.TempDir(), "weft-plugins-e2e-wazero")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	for k, v := range vars {
		yamlText = strings.ReplaceAll(yamlText, "{{"+k+"}}", v)
	}
	cfg, err := config.Parse("e2e.yaml", []byte(yamlText))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Apply(ctx, cfg, []byte(yamlText), ""); err != nil {
		t.Fatalf("apply: %v", err)
	}
	addr := p.ListenerAddr(listener)
	if addr == nil {
		t.Fatalf("no listener %q", listener)
	}
	return p, "http://" + addr.String()
}

// Response is what the client got.
type Response struct {
	Status  int
	Body    string
	Headers map[string]string // lower-case names, last value
}

// Client sends requests to the proxy.
type Client struct{ c fasthttp.Client }

// Do sends method url with headers (name, value pairs) and body.
func (c *Client) Do(t testing.TB, method, url, body string, headers ...string) Response {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	if body != "" {
		req.SetBodyString(body)
	}
	if err := c.c.DoTimeout(req, resp, 30*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	r := Response{Status: resp.StatusCode(), Body: string(resp.Body()), Headers: map[string]string{}}
	for k, v := range resp.Header.All() {
		r.Headers[strings.ToLower(string(k))] = string(v)
	}
	return r
}

// Get is Do with GET and no body.
func (c *Client) Get(t testing.TB, url string, headers ...string) Response {
	t.Helper()
	return c.Do(t, "GET", url, "", headers...)
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.c.CloseIdleConnections() }
