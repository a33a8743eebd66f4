package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/examples/demo/grpcsvc"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/config"
)

//go:embed demo.yaml.tmpl
var configTemplate string

// Options configure the demo.
type Options struct {
	// Port is the sidecar's port on 127.0.0.1 (0: any free port for
	// everything); its admin server takes Port+1, the control plane
	// Port+2, the sidecar the control plane drives Port+3 and that
	// sidecar's admin server Port+4.
	Port   int
	Logger *zap.Logger
	Out    io.Writer
	// CacheDir keeps the built plugin modules and their compiled code
	// between starts ("": DefaultCacheDir()).
	CacheDir string
	// NoPlugins runs the demo without the first-party plugins (the route
	// table does the canary split instead).
	NoPlugins bool
}

// service is one demo upstream.
type service struct {
	name     string
	failRate float64
	ln       net.Listener
	srv      *fasthttp.Server
	served   atomic.Int64
	failed   atomic.Int64
}

func startService(name string, failRate float64) (*service, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &service{name: name, failRate: failRate, ln: ln}
	s.srv = &fasthttp.Server{Handler: s.handle, NoDefaultServerHeader: true}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *service) handle(ctx *fasthttp.RequestCtx) {
	s.served.Add(1)
	if ctx.IsGet() && string(ctx.Path()) == "/healthz" {
		return
	}
	// Fail a steady share of requests (spread evenly, so the demo's
	// numbers are the same every run).
	if n := s.served.Load(); s.failRate > 0 && float64(n%10) < s.failRate*10 && n%10 != 9 {
		s.failed.Add(1)
		ctx.Error(`{"error":"ratings is having a bad day"}`, fasthttp.StatusServiceUnavailable)
		return
	}
	ctx.SetContentType("application/json")
	if user := ctx.Request.Header.Peek("X-User"); len(user) > 0 {
		fmt.Fprintf(ctx, `{"service":%q,"path":%q,"user":%q,"request_id":%q}`+"\n", s.name, ctx.Path(), user, ctx.Request.Header.Peek("X-Request-Id"))
		return
	}
	fmt.Fprintf(ctx, `{"service":%q,"path":%q,"request_id":%q}`+"\n", s.name, ctx.Path(), ctx.Request.Header.Peek("X-Request-Id"))
}

// ConfigData fills the demo config template.
type ConfigData struct {
	Listener, Admin                         string
	ReviewsV1, ReviewsV2, Ratings, Accounts string
	// GRPCA and GRPCB are the two gRPC servers.
	GRPCA, GRPCB string
	// Plugins maps a plugin name (auth, fault, routing, telemetry) to its
	// module file; nil renders the config without plugins.
	Plugins map[string]string
	// JWTKey is the base64url HS256 key of the auth plugin; Issuer the
	// issuer it requires; FaultDelay the fault plugin's delay.
	JWTKey, Issuer string
	FaultDelay     string
}

// Config renders the embedded demo config.
func Config(d ConfigData) ([]byte, error) {
	t, err := template.New("demo").Parse(configTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.Execute(&b, d)
	return b.Bytes(), err
}

// demo token settings: the auth plugin accepts HS256 tokens from this
// issuer for the accounts audience, signed with a key made at start.
const (
	demoIssuer = "https://demo.weft.local"
	demoUser   = "demo-user"
	faultDelay = 150 * time.Millisecond
)

// Run starts the demo and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	var svcs []*service
	defer func() {
		for _, s := range svcs {
			_ = s.srv.Shutdown()
			// Close the socket too: a Serve goroutine that had not started
			// when Shutdown ran would otherwise accept forever.
			_ = s.ln.Close()
		}
	}()
	for _, sv := range []struct {
		name string
		fail float64
	}{{"reviews-v1", 0}, {"reviews-v2", 0}, {"ratings", 0.3}, {"accounts", 0}} {
		s, err := startService(sv.name, sv.fail)
		if err != nil {
			return err
		}
		svcs = append(svcs, s)
	}
	var grpcs []*grpcsvc.Server
	defer func() {
		for _, g := range grpcs {
			g.Stop()
		}
	}()
	for _, name := range []string{"grpc-a", "grpc-b"} {
		g, err := grpcsvc.Start(name)
		if err != nil {
			return err
		}
		grpcs = append(grpcs, g)
	}
	listenAddr, adminAddr := "127.0.0.1:0", "127.0.0.1:0"
	maddrs := meshAddrs{control: "127.0.0.1:0", outbound: "127.0.0.1:0", admin: "127.0.0.1:0"}
	if o.Port > 0 {
		port := func(d int) string { return "127.0.0.1:" + strconv.Itoa(o.Port+d) }
		listenAddr, adminAddr = port(0), port(1)
		maddrs = meshAddrs{control: port(2), outbound: port(3), admin: port(4)}
	}
	data := ConfigData{Listener: listenAddr, Admin: adminAddr,
		ReviewsV1: svcs[0].ln.Addr().String(), ReviewsV2: svcs[1].ln.Addr().String(),
		Ratings: svcs[2].ln.Addr().String(), Accounts: svcs[3].ln.Addr().String(),
		GRPCA: grpcs[0].Addr(), GRPCB: grpcs[1].Addr(),
		Issuer: demoIssuer, FaultDelay: faultDelay.String()}

	// The plugins: built from plugins/ (or taken from the cache). Without
	// them the demo still runs, with the route table doing the split.
	var token string
	pluginNote := "plugins: off (NoPlugins)"
	wasmCache := ""
	if !o.NoPlugins {
		set, err := buildPlugins(ctx, o.CacheDir, o.Out)
		switch {
		case err != nil:
			pluginNote = fmt.Sprintf("plugins: not loaded, running without them: %v", err)
		default:
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			data.Plugins, data.JWTKey = set.paths, base64.RawURLEncoding.EncodeToString(key)
			token = mintToken(key, time.Now())
			how := fmt.Sprintf("built from plugins/ in %v", set.took.Round(100*time.Millisecond))
			if set.cached {
				how = "from the cache (unchanged sources)"
			}
			pluginNote = fmt.Sprintf("plugins: auth, fault, routing, telemetry %s; modules in %s", how, filepath.Dir(set.paths["auth"]))
			wasmCache = filepath.Join(o.CacheDir, "wazero")
		}
	}
	p, err := proxy.New(ctx, proxy.Options{Logger: o.Logger, DrainTimeout: 2 * time.Second, WasmCacheDir: wasmCache})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = p.Shutdown(sctx)
	}()
	cfg, err := apply(ctx, p, data)
	if err != nil && data.Plugins != nil {
		// The plugins built but the sidecar refused them: say why, go on
		// without them.
		pluginNote = fmt.Sprintf("plugins: not loaded, running without them: %v", err)
		data.Plugins, token = nil, ""
		cfg, err = apply(ctx, p, data)
	}
	if err != nil {
		return err
	}
	a, err := admin.Start(cfg.Admin.Address, p, p.Metrics().Registry(), o.Logger)
	if err != nil {
		return err
	}
	defer a.Close(context.Background()) //nolint:errcheck
	sidecar := p.ListenerAddr("outbound").String()

	// The control plane, in process, and the second sidecar it drives.
	m, err := startMesh(ctx, o.Logger, maddrs, svcs)
	if err != nil {
		return err
	}
	defer m.close()

	fmt.Fprintf(o.Out, "weft demo: a sidecar on http://%s in front of reviews-v1, reviews-v2 (canary), ratings (fails 30%%), accounts and two gRPC servers (%s)\n", sidecar, grpcsvc.Service)
	fmt.Fprintf(o.Out, "admin on http://%s\n%s\n", a.Addr(), pluginNote)
	m.intro(o.Out)
	fmt.Fprintln(o.Out)

	// The tour dials with its own net.Dialer (fasthttp's default dialer
	// starts a process-wide goroutine that never ends).
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	// A short idle time lets its cleaner goroutine end soon after the tour.
	tc := &fasthttp.Client{Dial: func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }, MaxIdleConnDuration: time.Second}
	defer tc.CloseIdleConnections()
	t := &tourer{out: o.Out, c: tc, url: "http://" + sidecar, admin: "http://" + a.Addr().String(), svcs: svcs}
	t.run(token)
	t.grpc(ctx, sidecar, grpcs)
	m.tour(ctx, t)
	fmt.Fprintf(o.Out, `
Try:
  curl -s http://%[1]s/reviews                          # 90%% v1, 10%% v2 (canary)
  curl -s -H 'x-canary: always' http://%[1]s/reviews    # A/B: always v2
  curl -s http://%[1]s/ratings                          # retried past a 30%% failure rate
  curl -s http://%[2]s/clusters                         # endpoints and their health
  curl -s http://%[2]s/stats/prometheus | grep weft_     # metrics
  curl -s http://%[2]s/config_dump                      # the config in force and its version
`, sidecar, a.Addr())
	if token != "" {
		fmt.Fprintf(o.Out, `  curl -si http://%[1]s/account                         # 401: the auth plugin wants a JWT
  curl -si -H 'x-chaos: on' http://%[1]s/ratings        # the fault plugin: %[3]v delay, then 503
  curl -s http://%[4]s/stats/prometheus | grep demo_      # the telemetry plugin's counters
  curl -s -H 'authorization: Bearer %[2]s' http://%[1]s/account
`, sidecar, token, faultDelay, a.Addr())
	}
	tryGRPC(o.Out, sidecar)
	m.try(o.Out)
	fmt.Fprintf(o.Out, "Stop with Ctrl-C.\n")
	<-ctx.Done()
	return nil
}

// apply renders the config from data and applies it to p.
func apply(ctx context.Context, p *proxy.Proxy, data ConfigData) (*config.Config, error) {
	raw, err := Config(data)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse("demo.yaml", raw)
	if err != nil {
		return nil, err
	}
	if err := p.Apply(ctx, cfg, raw, ""); err != nil {
		return nil, err
	}
	return cfg, nil
}

// mintToken returns an HS256 JWT for demoUser, valid for a day, that the
// demo's auth plugin accepts.
func mintToken(key []byte, now time.Time) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"demo"}`))
	claims := enc.EncodeToString([]byte(fmt.Sprintf(`{"iss":%q,"aud":"accounts","sub":%q,"iat":%d,"exp":%d}`,
		demoIssuer, demoUser, now.Unix(), now.Add(24*time.Hour).Unix())))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(header + "." + claims))
	return header + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
}

// tourer sends requests through the sidecar and prints what happened, so
// the demo shows its features working, not just running.
type tourer struct {
	out        io.Writer
	c          *fasthttp.Client
	url, admin string
	svcs       []*service
}

// reply is what one request got.
type reply struct {
	status  int
	body    string
	headers map[string]string
	took    time.Duration
	err     error
}

func (t *tourer) do(path string, hdrs ...string) reply {
	return t.doAt(t.url, "", path, hdrs...)
}

// doAt sends GET base+path with the Host header host ("": base's host).
func (t *tourer) doAt(base, host, path string, hdrs ...string) reply {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(base + path)
	if host != "" {
		req.UseHostHeader = true
		req.Header.SetHost(host)
	}
	for i := 0; i+1 < len(hdrs); i += 2 {
		req.Header.Set(hdrs[i], hdrs[i+1])
	}
	start := time.Now()
	if err := t.c.DoTimeout(req, resp, 3*time.Second); err != nil {
		return reply{err: err}
	}
	r := reply{status: resp.StatusCode(), body: string(resp.Body()), headers: map[string]string{}, took: time.Since(start)}
	for k, v := range resp.Header.All() {
		r.headers[strings.ToLower(string(k))] = string(v)
	}
	return r
}

// count sends n requests and counts the answers by service (or status).
func (t *tourer) count(path string, n int, hdrs ...string) map[string]int {
	return t.countAt(t.url, "", path, n, hdrs...)
}

// countAt is count through base with the Host header host.
func (t *tourer) countAt(base, host, path string, n int, hdrs ...string) map[string]int {
	got := map[string]int{}
	for i := 0; i < n; i++ {
		r := t.doAt(base, host, path, hdrs...)
		switch {
		case r.err != nil:
			got["error"]++
		case r.status != 200:
			got[strconv.Itoa(r.status)]++
		case strings.Contains(r.body, "reviews-v2"):
			got["reviews-v2"]++
		case strings.Contains(r.body, "reviews-v1"):
			got["reviews-v1"]++
		default:
			got["200"]++
		}
	}
	return got
}

func (t *tourer) run(token string) {
	by := "the route table"
	if token != "" {
		by = "the routing plugin"
	}
	split := t.count("/reviews", 200)
	fmt.Fprintf(t.out, "canary split over 200 requests to /reviews: v1=%d v2=%d (configured 90/10, chosen by %s)\n", split["reviews-v1"], split["reviews-v2"], by)
	ab := t.count("/reviews", 20, "x-canary", "always")
	fmt.Fprintf(t.out, "A/B with x-canary: always, 20 requests: v2=%d\n", ab["reviews-v2"])
	before := t.svcs[2].failed.Load()
	r := t.count("/ratings", 100)
	fmt.Fprintf(t.out, "retries: 100 requests to /ratings: %d succeeded for the client while the service failed %d tries\n",
		r["200"], t.svcs[2].failed.Load()-before)
	if token == "" {
		return
	}
	t.auth(token)
	t.fault()
	t.telemetry()
}

// auth shows the auth plugin refusing a request without a token and one
// with a forged token, and letting the demo's token through.
func (t *tourer) auth(token string) {
	accounts := t.svcs[3]
	before := accounts.served.Load()
	none := t.do("/account")
	forged := t.do("/account", "authorization", "Bearer "+token[:strings.LastIndexByte(token, '.')+1]+"AAAA")
	fmt.Fprintf(t.out, "auth plugin on /account: without a token: %s (www-authenticate: %s); forged signature: %s; accounts service saw %d of them\n",
		statusText(none), none.headers["www-authenticate"], statusText(forged), accounts.served.Load()-before)
	ok := t.do("/account", "authorization", "Bearer "+token)
	user := "none"
	if i := strings.Index(ok.body, `"user":"`); i >= 0 {
		user = ok.body[i+8:]
		user = user[:strings.IndexByte(user, '"')]
	}
	fmt.Fprintf(t.out, "auth plugin on /account: with the demo's HS256 token: %s, the service saw x-user=%s\n", statusText(ok), user)
}

// fault shows the fault plugin delaying, then aborting, requests that opt
// in with x-chaos: on, while the ratings service never sees them.
func (t *tourer) fault() {
	ratings := t.svcs[2]
	before := ratings.served.Load()
	const n = 3
	aborted := 0
	var took []string
	for i := 0; i < n; i++ {
		r := t.do("/ratings", "x-chaos", "on")
		if r.err == nil && r.status == 503 && r.headers["x-weft-fault"] == "abort" {
			aborted++
		}
		took = append(took, r.took.Round(time.Millisecond).String())
	}
	fmt.Fprintf(t.out, "fault plugin on /ratings with x-chaos: on: %d of %d answered 503 by the plugin (x-weft-fault: abort) after its %v delay (took %s); ratings saw %d of them\n",
		aborted, n, faultDelay, strings.Join(took, ", "), ratings.served.Load()-before)
}

// telemetry prints the telemetry plugin's request counters as the admin
// server exports them.
func (t *tourer) telemetry() {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.admin + "/stats/prometheus")
	if err := t.c.DoTimeout(req, resp, 3*time.Second); err != nil {
		fmt.Fprintf(t.out, "telemetry plugin: reading /stats/prometheus failed: %v\n", err)
		return
	}
	var lines []string
	for _, l := range strings.Split(string(resp.Body()), "\n") {
		if strings.HasPrefix(l, "weft_wasm_guest_counter_total{") && strings.Contains(l, `plugin="telemetry"`) && strings.Contains(l, "demo_requests_total") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	fmt.Fprintf(t.out, "telemetry plugin: its request counters in the admin's /stats/prometheus:\n")
	for i, l := range lines {
		if i == 12 {
			fmt.Fprintf(t.out, "  ... and %d more\n", len(lines)-i)
			break
		}
		fmt.Fprintf(t.out, "  %s\n", l)
	}
}

func statusText(r reply) string {
	if r.err != nil {
		return "error " + r.err.Error()
	}
	return strconv.Itoa(r.status)
}
