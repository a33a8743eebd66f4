package main

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/weftmesh/weft/sdk"
)

type plugin struct {
	cfg      *Config
	rng      *rand.Rand
	counters map[string]sdk.Counter // by route, status
	routes   map[string]bool
	reqSize  sdk.Histogram
	respSize sdk.Histogram
	latency  sdk.Histogram
	sampled  sdk.Counter
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	p := &plugin{cfg: cfg, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		counters: map[string]sdk.Counter{}, routes: map[string]bool{}}
	for name, h := range map[string]*sdk.Histogram{
		"_request_bytes": &p.reqSize, "_response_bytes": &p.respSize, "_request_duration_us": &p.latency,
	} {
		if *h, err = sdk.NewHistogram(cfg.Prefix + name); err != nil {
			return nil, err
		}
	}
	if p.sampled, err = sdk.NewCounter(cfg.Prefix + "_sampled_logs_total"); err != nil {
		return nil, err
	}
	return p, nil
}

// NewHTTPFilter implements sdk.Plugin.
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return &filter{p: p} }

// counter returns the request counter for route and status, defining it on
// first use; routes beyond MaxRoutes are folded into "other".
func (p *plugin) counter(route, status string) sdk.Counter {
	if !p.routes[route] {
		if len(p.routes) >= p.cfg.MaxRoutes {
			route = "other"
		} else {
			p.routes[route] = true
		}
	}
	key := route + "\x00" + status
	c, ok := p.counters[key]
	if !ok {
		var err error
		if c, err = sdk.NewCounter(p.cfg.requestsName(route, status)); err != nil {
			sdk.Warnf("telemetry: defining a counter: %v", err)
		}
		p.counters[key] = c
	}
	return c
}

// filter remembers what the request looked like for OnLog.
type filter struct {
	p       *plugin
	method  string
	path    string
	sample  bool
	headers [][2]string
}

// OnRequestHeaders decides sampling and keeps what the log line needs.
func (f *filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	p := f.p
	f.sample = p.cfg.SampleRate > 0 && p.rng.Float64() < p.cfg.SampleRate
	if f.sample || p.cfg.LogErrors {
		h := s.RequestHeaders()
		f.method, _ = h.Get(":method")
		f.path, _ = h.Get(":path")
		for _, name := range p.cfg.LogHeaders {
			if v, ok := h.Get(name); ok {
				f.headers = append(f.headers, [2]string{name, v})
			}
		}
	}
	return sdk.Continue
}

func int64Property(s *sdk.Stream, path ...string) (int64, bool) {
	b, err := s.Property(path...)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b)), true
}

// OnLog records the metrics and the log line once the response is done.
func (f *filter) OnLog(s *sdk.Stream) {
	p := f.p
	code, _ := int64Property(s, "response", "code")
	route := "unknown"
	if r, err := s.Property("route_name"); err == nil && len(r) > 0 {
		route = string(r)
	}
	p.counter(route, p.cfg.statusLabel(int(code))).Inc()
	if n, ok := int64Property(s, "request", "size"); ok {
		p.reqSize.Record(uint64(n))
	}
	if n, ok := int64Property(s, "response", "size"); ok {
		p.respSize.Record(uint64(n))
	}
	dur, _ := int64Property(s, "request", "duration")
	p.latency.Record(uint64(dur / 1000))
	if f.sample || (p.cfg.LogErrors && code >= 500) {
		p.sampled.Inc()
		sdk.Log(sdk.LogInfo, logLine(f.method, f.path, int(code), dur/1000, route, f.headers))
	}
}
