package sdkexamples_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// example is one e2e-tested SDK example: its weft config (as its
// envoy.yaml says) and the e2e test's expectations. check reports what is
// still missing ("" when everything holds); it is polled.
type example struct {
	name   string
	wasm   []string // example sub-directories to build; {{wasm:DIR}} in the config
	config string
	check  func(h *harness) string
}

// TestSDKExamples runs every example and reports how many behave.
func TestSDKExamples(t *testing.T) {
	dir := os.Getenv("WEFT_GO_SDK_DIR")
	if dir == "" {
		t.Skip("set WEFT_GO_SDK_DIR to a checkout of github.com/proxy-wasm/proxy-wasm-go-sdk")
	}
	out := t.TempDir()
	var passed, failed []string
	for _, ex := range examples {
		ok := t.Run(ex.name, func(t *testing.T) {
			h := start(t, dir, out, ex)
			var missing string
			deadline := time.Now().Add(10 * time.Second)
			for {
				if missing = ex.check(h); missing == "" {
					return
				}
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Errorf("not as Envoy: %s", missing)
		})
		if ok {
			passed = append(passed, ex.name)
		} else {
			failed = append(failed, ex.name)
		}
	}
	t.Logf("SDK examples behaving as their e2e test expects: %d of %d\npass: %s\nfail: %s",
		len(passed), len(examples), strings.Join(passed, " "), strings.Join(failed, " "))
}

// harness is one example's running proxy and what it saw.
type harness struct {
	t     *testing.T
	p     *proxy.Proxy
	logs  *logSink
	addrs map[string]string // listener name → address
}

// start builds the example's modules, starts its upstreams and a proxy
// with its config.
func start(t *testing.T, sdkDir, out string, ex example) *harness {
	t.Helper()
	vars := map[string]string{}
	for _, d := range ex.wasm {
		vars["wasm:"+d] = build(t, sdkDir, out, d)
	}
	vars["static"] = staticServer(t, "example body\n")
	vars["primary"] = staticServer(t, "hello from primary!\n")
	vars["canary"] = staticServer(t, "hello from canary!\n")
	vars["free"] = testserver.FreeAddr(t)
	text := ex.config
	for k, v := range vars {
		text = strings.ReplaceAll(text, "{{"+k+"}}", v)
	}
	cfg, err := config.Parse(ex.name+".yaml", []byte(text))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	logs := &logSink{}
	p, err := proxy.New(context.Background(), proxy.Options{Logger: zap.New(logs), DrainTimeout: time.Second,
		WasmCacheDir: filepath.Join(os.TempDir(), "weft-sdkexamples-wazero")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	if err := p.Apply(context.Background(), cfg, []byte(text), ""); err != nil {
		t.Fatalf("apply: %v", err)
	}
	h := &harness{t: t, p: p, logs: logs, addrs: map[string]string{}}
	for _, l := range cfg.Listeners {
		h.addrs[l.Name] = p.ListenerAddr(l.Name).String()
	}
	return h
}

// build compiles examples/DIR of the SDK checkout (once per process).
func build(t *testing.T, sdkDir, out, dir string) string {
	t.Helper()
	dst := filepath.Join(out, strings.ReplaceAll(dir, "/", "_")+".wasm")
	if _, err := os.Stat(dst); err == nil {
		return dst
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", dst, ".")
	cmd.Dir = filepath.Join(sdkDir, "examples", dir)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", dir, err, b)
	}
	return dst
}

// staticServer answers every path with body (and /fail with 503) until
// the test ends: Envoy's direct_response listeners the examples use as
// upstreams.
func staticServer(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// net/http, not fasthttp: the examples send Hosts fasthttp's server
	// refuses ("localhost:18000-canary"), which Envoy's direct responses
	// take.
	var n atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(503)
		case "/uuid": // httpbin's: a new id each time
			fmt.Fprintf(w, "{\n  \"uuid\": \"%08x-0000-4000-8000-%012x\"\n}\n", n.Add(1), n.Load()*7919)
		default:
			_, _ = io.WriteString(w, body)
		}
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// logSink keeps every log entry as "message key=value …" lines.
type logSink struct {
	mu    sync.Mutex
	b     strings.Builder
	attrs []zapcore.Field
}

func (s *logSink) Enabled(zapcore.Level) bool { return true }
func (s *logSink) With(f []zapcore.Field) zapcore.Core {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &childSink{s, append(append([]zapcore.Field(nil), s.attrs...), f...)}
}
func (s *logSink) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, s)
}
func (s *logSink) Write(e zapcore.Entry, f []zapcore.Field) error { return s.write(e, f) }
func (s *logSink) Sync() error                                    { return nil }

func (s *logSink) write(e zapcore.Entry, f []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, x := range f {
		x.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(e.Message)
	for _, k := range keys {
		fmt.Fprintf(&s.b, " %s=%v", k, enc.Fields[k])
	}
	s.b.WriteByte('\n')
	return nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type childSink struct {
	s     *logSink
	attrs []zapcore.Field
}

func (c *childSink) Enabled(zapcore.Level) bool { return true }
func (c *childSink) With(f []zapcore.Field) zapcore.Core {
	return &childSink{c.s, append(append([]zapcore.Field(nil), c.attrs...), f...)}
}
func (c *childSink) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}
func (c *childSink) Write(e zapcore.Entry, f []zapcore.Field) error {
	return c.s.write(e, append(append([]zapcore.Field(nil), c.attrs...), f...))
}
func (c *childSink) Sync() error { return nil }

// logHas names the first of want the logs lack ("" when all are there).
func (h *harness) logHas(want ...string) string {
	logs := h.logs.String()
	for _, w := range want {
		if !strings.Contains(logs, w) {
			return fmt.Sprintf("log line with %q", w)
		}
	}
	return ""
}

// do sends one request to a listener.
func (h *harness) do(listener, method, path string, body string, hdrs ...string) (int, string, *fasthttp.ResponseHeader, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + h.addrs[listener] + path)
	req.Header.SetMethod(method)
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Add(hdrs[i], hdrs[i+1])
	}
	if body != "" {
		req.SetBodyString(body)
	}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		return 0, "", nil, err
	}
	var rh fasthttp.ResponseHeader
	resp.Header.CopyTo(&rh)
	return resp.StatusCode(), string(resp.Body()), &rh, nil
}

// get sends a GET and reports a transport error or an unexpected status.
func (h *harness) get(listener, path string, status int, hdrs ...string) string {
	st, body, _, err := h.do(listener, "GET", path, "", hdrs...)
	if err != nil {
		return "request: " + err.Error()
	}
	if st != status {
		return fmt.Sprintf("GET %s: status %d (%q), want %d", path, st, body, status)
	}
	return ""
}

// sample is the value of the counter or gauge name whose labels include
// labels.
func (h *harness) sample(name string, labels map[string]string) (float64, bool) {
	mfs, err := h.p.Metrics().Registry().Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func first(msgs ...string) string {
	for _, m := range msgs {
		if m != "" {
			return m
		}
	}
	return ""
}

// tcpGet sends a raw HTTP/1.1 GET through a tcp listener and reads the
// answer to EOF.
func (h *harness) tcpGet(listener string, hdrs ...string) (string, error) {
	c, err := net.DialTimeout("tcp", h.addrs[listener], 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
	for i := 0; i+1 < len(hdrs); i += 2 {
		b.WriteString(hdrs[i] + ": " + hdrs[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	st, err := bufio.NewReader(c).ReadString('\n')
	return st, err
}

const directListener = `
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [%s]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: all
            match: {prefix: /}
            direct_response: {status: 200, body: "example body\n"}
`

const clusterListener = `
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [%s]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: all
            match: {prefix: /}
            route: {cluster: %s}
`

var examples = []example{
	{
		name: "dispatch_call_on_tick", wasm: []string{"dispatch_call_on_tick"},
		config: fmt.Sprintf(clusterListener, "plugin1, plugin2", "web_service") + `
filters:
  - {name: plugin1, module: {path: "{{wasm:dispatch_call_on_tick}}"}, config: plugin1}
  - {name: plugin2, module: {path: "{{wasm:dispatch_call_on_tick}}"}, config: plugin2}
clusters:
  - {name: web_service, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			var want []string
			for i := 1; i <= 5; i++ {
				want = append(want, fmt.Sprintf("called %d for contextID=1", i), fmt.Sprintf("called %d for contextID=2", i))
			}
			return h.logHas(append(want, ":status: 200", ":status: 503")...)
		},
	},
	{
		name: "foreign_call_on_tick", wasm: []string{"foreign_call_on_tick"},
		config: fmt.Sprintf(directListener, "f") + `
filters:
  - {name: f, module: {path: "{{wasm:foreign_call_on_tick}}"}}
`,
		check: func(h *harness) string {
			var want []string
			for i := 1; i <= 5; i++ {
				want = append(want, fmt.Sprintf("foreign function (compress) called: %d", i))
			}
			return h.logHas(want...)
		},
	},
	{
		name: "helloworld", wasm: []string{"helloworld"},
		config: fmt.Sprintf(directListener, "f") + `
filters:
  - {name: f, module: {path: "{{wasm:helloworld}}"}}
`,
		check: func(h *harness) string { return h.logHas("OnPluginStart from Go!", "It's") },
	},
	{
		name: "http_auth_random", wasm: []string{"http_auth_random"},
		config: fmt.Sprintf(clusterListener, "f", "httpbin") + `
filters:
  - {name: f, module: {path: "{{wasm:http_auth_random}}"}}
clusters:
  - {name: httpbin, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			_, _, _, _ = h.do("main", "GET", "/uuid", "", "this-is-key", "this-is-value")
			return h.logHas("access forbidden", "access granted", "response header from httpbin: :status: 200")
		},
	},
	{
		name: "http_body", wasm: []string{"http_body"},
		config: `
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [body-set]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {name: all, match: {prefix: /}, route: {cluster: echo}}
  - name: echo
    address: "{{free}}"
    filters: [echo]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {name: all, match: {prefix: /}, direct_response: {status: 200}}
filters:
  - {name: body-set, module: {path: "{{wasm:http_body}}"}, config: body-set}
  - {name: echo, module: {path: "{{wasm:http_body}}"}, config: echo}
clusters:
  - {name: echo, endpoints: [{address: "{{free}}"}]}
`,
		check: func(h *harness) string {
			for _, mode := range []string{"request", "response"} {
				for _, tc := range []struct{ op, want string }{
					{"append", "[original body][this is appended body]"},
					{"prepend", "[this is prepended body][original body]"},
					{"replace", "[this is replaced body]"},
					{"invalid", "[this is replaced body]"},
				} {
					st, body, _, err := h.do("main", "PUT", "/anything", "[original body]", "buffer-replace-at", mode, "buffer-operation", tc.op)
					if err != nil || body != tc.want {
						return fmt.Sprintf("%s %s: %d %q %v, want %q", mode, tc.op, st, body, err, tc.want)
					}
				}
				if m := h.logHas(fmt.Sprintf("original %s body: [original body]", mode)); m != "" {
					return m
				}
			}
			return ""
		},
	},
	{
		name: "http_headers", wasm: []string{"http_headers"},
		config: fmt.Sprintf(clusterListener, "f", "web_service") + `
filters:
  - name: f
    module: {path: "{{wasm:http_headers}}"}
    config: '{"header": "x-wasm-header", "value": "demo-wasm"}'
clusters:
  - {name: web_service, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			st, _, rh, err := h.do("main", "GET", "/uuid", "", "this-is-key", "this-is-value")
			if err != nil || st != 200 {
				return fmt.Sprintf("GET: %d %v", st, err)
			}
			if v := string(rh.Peek("x-wasm-header")); v != "demo-wasm" {
				return "x-wasm-header " + v
			}
			if v := string(rh.Peek("x-proxy-wasm-go-sdk-example")); v != "http_headers" {
				return "x-proxy-wasm-go-sdk-example " + v
			}
			// "server: envoy" aside, as issue 17 says.
			return h.logHas("this-is-key", "this-is-value", "x-wasm-header", "x-proxy-wasm-go-sdk-example")
		},
	},
	{
		name: "http_routing", wasm: []string{"http_routing"},
		config: `
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [f]
    virtual_hosts:
      - name: canary
        domains: ["*-canary"]
        routes:
          - {name: canary, match: {prefix: /}, route: {cluster: canary}}
      - name: primary
        domains: ["*"]
        routes:
          - {name: primary, match: {prefix: /}, route: {cluster: primary}}
filters:
  - {name: f, module: {path: "{{wasm:http_routing}}"}}
clusters:
  - {name: primary, endpoints: [{address: "{{primary}}"}]}
  - {name: canary, endpoints: [{address: "{{canary}}"}]}
`,
		check: func() func(h *harness) string {
			var primary, canary bool
			return func(h *harness) string {
				for range 20 {
					_, body, _, _ := h.do("main", "GET", "/", "")
					primary = primary || strings.Contains(body, "primary")
					canary = canary || strings.Contains(body, "canary")
				}
				if !primary || !canary {
					return fmt.Sprintf("primary seen %t, canary seen %t", primary, canary)
				}
				return ""
			}
		}(),
	},
	{
		name: "metrics", wasm: []string{"metrics"},
		config: fmt.Sprintf(directListener, "f") + `
stats_tags:
  - tag_name: value
    regex: '(_value=([a-zA-Z]+))'
  - tag_name: reporter
    regex: '(_reporter=([a-zA-Z]+))'
filters:
  - {name: f, module: {path: "{{wasm:metrics}}"}}
`,
		check: func() func(h *harness) string {
			sent := false
			return func(h *harness) string {
				if !sent {
					sent = true
					for v, n := range map[string]int{"foo": 3, "bar": 5} {
						for range n {
							if m := h.get("main", "/", 200, "my-custom-header", v); m != "" {
								return m
							}
						}
					}
				}
				// The e2e test greps Envoy's text for
				// custom_header_value_counts{value="foo",reporter="wasmgosdk"} 3;
				// Prometheus' exposition orders labels by name and weft adds
				// plugin, so look the sample up by its labels instead.
				for v, n := range map[string]int{"foo": 3, "bar": 5} {
					if got, ok := h.sample("custom_header_value_counts", map[string]string{"value": v, "reporter": "wasmgosdk"}); !ok || got != float64(n) {
						return fmt.Sprintf("custom_header_value_counts{value=%q,reporter=\"wasmgosdk\"} = %v (found %t), want %d", v, got, ok, n)
					}
				}
				return ""
			}
		}(),
	},
	{
		name: "network", wasm: []string{"network"},
		config: `
listeners:
  - name: main
    address: 127.0.0.1:0
    protocol: tcp
    filters: [f]
    tcp: {cluster: web_service}
filters:
  - {name: f, module: {path: "{{wasm:network}}"}}
clusters:
  - name: web_service
    endpoints: [{address: "{{static}}"}]
    metadata:
      filter_metadata:
        location: {region: ap-northeast-1, cloud_provider: aws, az: ap-northeast-1a}
`,
		check: func(h *harness) string {
			if _, err := h.tcpGet("main", "This-Is-Key", "this-is-value"); err != nil {
				return "tcp GET: " + err.Error()
			}
			return h.logHas("This-Is-Key", "this-is-value", "downstream data received", "new connection!",
				"downstream connection close!", "upstream data received", "connection complete!", "remote address: 127.0.0.1:",
				"upstream cluster metadata location[region]=ap-northeast-1",
				"upstream cluster metadata location[cloud_provider]=aws",
				"upstream cluster metadata location[az]=ap-northeast-1a")
		},
	},
	{
		name: "postpone_requests", wasm: []string{"postpone_requests"},
		config: fmt.Sprintf(directListener, "f") + `
filters:
  - {name: f, module: {path: "{{wasm:postpone_requests}}"}}
`,
		check: func(h *harness) string {
			if m := h.get("main", "/", 200); m != "" {
				return m
			}
			return h.logHas("postpone request with contextID=2", "resume request with contextID=2")
		},
	},
	{
		name: "properties", wasm: []string{"properties"},
		config: `
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [f]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: one
            match: {prefix: /one}
            route: {cluster: web_service}
            metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: cookie}}}
          - name: two
            match: {prefix: /two}
            route: {cluster: web_service}
            metadata: {filter_metadata: {envoy.filters.http.wasm: {auth: authorization}}}
          - {name: three, match: {prefix: /three}, route: {cluster: web_service}}
filters:
  - {name: f, module: {path: "{{wasm:properties}}"}}
clusters:
  - {name: web_service, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			if m := first(h.get("main", "/one", 401), h.get("main", "/one", 200, "cookie", "value"),
				h.get("main", "/two", 401), h.get("main", "/two", 200, "authorization", "token"),
				h.get("main", "/three", 200)); m != "" {
				return m
			}
			return h.logHas(`auth header is "cookie"`, `auth header is "authorization"`, "no auth header for route")
		},
	},
	{
		name: "shared_data", wasm: []string{"shared_data"},
		config: fmt.Sprintf(directListener, "f") + `
filters:
  - {name: f, module: {path: "{{wasm:shared_data}}"}}
`,
		check: func() func(h *harness) string {
			sent := false
			return func(h *harness) string {
				if !sent {
					sent = true
					for range 10 {
						if m := h.get("main", "/", 200); m != "" {
							return m
						}
					}
				}
				return h.logHas("shared value: 10")
			}
		}(),
	},
	{
		name: "shared_queue", wasm: []string{"shared_queue/sender", "shared_queue/receiver"},
		config: `
wasm_services:
  - {name: r1, module: {path: "{{wasm:shared_queue/receiver}}"}, vm_id: receiver, config: http_request_headers}
  - {name: r2, module: {path: "{{wasm:shared_queue/receiver}}"}, vm_id: receiver, config: http_response_headers}
  - {name: r3, module: {path: "{{wasm:shared_queue/receiver}}"}, vm_id: receiver, config: tcp_data_hashes}
listeners:
  - name: http
    address: 127.0.0.1:0
    filters: [http]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {name: all, match: {prefix: /}, route: {cluster: static}}
  - name: tcp
    address: 127.0.0.1:0
    protocol: tcp
    filters: [tcp]
    tcp: {cluster: static}
filters:
  - {name: http, module: {path: "{{wasm:shared_queue/sender}}"}, vm_id: sender, config: http}
  - {name: tcp, module: {path: "{{wasm:shared_queue/sender}}"}, vm_id: sender, config: tcp}
clusters:
  - {name: static, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			if m := h.get("http", "/", 200); m != "" {
				return m
			}
			if st, err := h.tcpGet("tcp"); err != nil || !strings.Contains(st, " 200 ") {
				return fmt.Sprintf("tcp GET: %q %v", st, err)
			}
			return h.logHas(`enqueued data: {"key": ":method","value": "GET"}`, "dequeued data from http_request_headers",
				"dequeued data from http_response_headers", "dequeued data from tcp_data_hashes")
		},
	},
	{
		name: "vm_plugin_configuration", wasm: []string{"vm_plugin_configuration"},
		config: fmt.Sprintf(directListener, "f") + `
filters:
  - name: f
    module: {path: "{{wasm:vm_plugin_configuration}}"}
    vm_config: |
      {
        "name": "vm configuration"
      }
    config: |
      {
        "name": "plugin configuration"
      }
`,
		check: func(h *harness) string {
			return h.logHas(`name": "vm configuration`, `name": "plugin configuration`)
		},
	},
	{
		name: "json_validation", wasm: []string{"json_validation"},
		config: fmt.Sprintf(clusterListener, "f", "web_service") + `
filters:
  - name: f
    module: {path: "{{wasm:json_validation}}"}
    config: '{ "requiredKeys": ["id", "token"] }'
clusters:
  - {name: web_service, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			if m := h.get("main", "/", 403); m != "" {
				return m
			}
			st, body, _, err := h.do("main", "POST", "/", `{"id": "abc123", "token": "xyz456"}`, "content-type", "application/json")
			if err != nil || st != 200 {
				return fmt.Sprintf("POST json: %d %q %v", st, body, err)
			}
			return ""
		},
	},
	{
		name: "multiple_dispatches", wasm: []string{"multiple_dispatches"},
		config: fmt.Sprintf(clusterListener, "f", "httpbin") + `
filters:
  - {name: f, plugin_name: "", module: {path: "{{wasm:multiple_dispatches}}"}}
clusters:
  - {name: httpbin, endpoints: [{address: "{{static}}"}]}
`,
		check: func(h *harness) string {
			if m := h.get("main", "/", 200); m != "" {
				return m
			}
			var want []string
			for i := 9; i >= 1; i-- {
				want = append(want, fmt.Sprintf("wasm log: pending dispatched requests: %d", i))
			}
			return h.logHas(append(want, "wasm log: response resumed after processed 10 dispatched request")...)
		},
	},
}
