package demo

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/config"
)

//go:embed demo.yaml.tmpl
var configTemplate string

// Options configure the demo.
type Options struct {
	// Port is the sidecar's port on 127.0.0.1 (0: any free port); the admin
	// server takes Port+1.
	Port   int
	Logger *zap.Logger
	Out    io.Writer
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
	fmt.Fprintf(ctx, `{"service":%q,"path":%q,"request_id":%q}`+"\n", s.name, ctx.Path(), ctx.Request.Header.Peek("X-Request-Id"))
}

// Config renders the embedded demo config with the given addresses.
func Config(listener, adminAddr, reviewsV1, reviewsV2, ratings string) ([]byte, error) {
	t, err := template.New("demo").Parse(configTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]string{"Listener": listener, "Admin": adminAddr,
		"ReviewsV1": reviewsV1, "ReviewsV2": reviewsV2, "Ratings": ratings})
	return b.Bytes(), err
}

// Run starts the demo and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	var svcs []*service
	defer func() {
		for _, s := range svcs {
			_ = s.srv.Shutdown()
		}
	}()
	for _, sv := range []struct {
		name string
		fail float64
	}{{"reviews-v1", 0}, {"reviews-v2", 0}, {"ratings", 0.3}} {
		s, err := startService(sv.name, sv.fail)
		if err != nil {
			return err
		}
		svcs = append(svcs, s)
	}
	listenAddr, adminAddr := "127.0.0.1:0", "127.0.0.1:0"
	if o.Port > 0 {
		listenAddr = "127.0.0.1:" + strconv.Itoa(o.Port)
		adminAddr = "127.0.0.1:" + strconv.Itoa(o.Port+1)
	}
	raw, err := Config(listenAddr, adminAddr, svcs[0].ln.Addr().String(), svcs[1].ln.Addr().String(), svcs[2].ln.Addr().String())
	if err != nil {
		return err
	}
	cfg, err := config.Parse("demo.yaml", raw)
	if err != nil {
		return err
	}
	p, err := proxy.New(ctx, proxy.Options{Logger: o.Logger, DrainTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = p.Shutdown(sctx)
	}()
	if err := p.Apply(ctx, cfg, raw, ""); err != nil {
		return err
	}
	a, err := admin.Start(cfg.Admin.Address, p, p.Metrics().Registry(), o.Logger)
	if err != nil {
		return err
	}
	defer a.Close(context.Background()) //nolint:errcheck
	sidecar := p.ListenerAddr("outbound").String()

	fmt.Fprintf(o.Out, "weft demo: a sidecar on http://%s in front of reviews-v1, reviews-v2 (canary) and ratings (fails 30%%)\n", sidecar)
	fmt.Fprintf(o.Out, "admin on http://%s\n\n", a.Addr())
	tour(o.Out, sidecar, svcs)
	fmt.Fprintf(o.Out, `
Try:
  curl -s http://%[1]s/reviews                          # 90%% v1, 10%% v2 (canary)
  curl -s -H 'x-canary: always' http://%[1]s/reviews    # A/B: always v2
  curl -s http://%[1]s/ratings                          # retried past a 30%% failure rate
  curl -s http://%[2]s/clusters                         # endpoints and their health
  curl -s http://%[2]s/stats/prometheus | grep weft_     # metrics
  curl -s http://%[2]s/config_dump                      # the config in force and its version
Stop with Ctrl-C.
`, sidecar, a.Addr())
	<-ctx.Done()
	return nil
}

// tour sends a few requests through the sidecar and prints what happened,
// so the demo shows its features working, not just running.
func tour(out io.Writer, sidecar string, svcs []*service) {
	c := &fasthttp.Client{}
	url := "http://" + sidecar
	count := func(path string, n int, hdr [2]string) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI(url + path)
			if hdr[0] != "" {
				req.Header.Set(hdr[0], hdr[1])
			}
			if err := c.DoTimeout(req, resp, 3*time.Second); err != nil {
				got["error"]++
			} else if resp.StatusCode() != 200 {
				got[strconv.Itoa(resp.StatusCode())]++
			} else {
				switch {
				case bytes.Contains(resp.Body(), []byte("reviews-v2")):
					got["reviews-v2"]++
				case bytes.Contains(resp.Body(), []byte("reviews-v1")):
					got["reviews-v1"]++
				default:
					got["200"]++
				}
			}
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
		}
		return got
	}
	split := count("/reviews", 200, [2]string{})
	fmt.Fprintf(out, "canary split over 200 requests to /reviews: v1=%d v2=%d (configured 90/10)\n", split["reviews-v1"], split["reviews-v2"])
	ab := count("/reviews", 20, [2]string{"x-canary", "always"})
	fmt.Fprintf(out, "A/B with x-canary: always, 20 requests: v2=%d\n", ab["reviews-v2"])
	before := svcs[2].failed.Load()
	r := count("/ratings", 100, [2]string{})
	fmt.Fprintf(out, "retries: 100 requests to /ratings: %d succeeded for the client while the service failed %d tries\n",
		r["200"], svcs[2].failed.Load()-before)
}
