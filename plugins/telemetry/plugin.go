package main

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/weftmesh/weft/sdk"
)

type plugin struct {
	cfg *Config
	rng *rand.Rand
	// routes holds each route's counters; routes beyond MaxRoutes are
	// counted under "other".
	routes map[string]*routeCounters
	other  *routeCounters
	// last is the route found last: most requests of a sidecar are one
	// route's, so most skip the map (hashing a string in the VM).
	last     *routeCounters
	reqSize  sdk.Histogram
	respSize sdk.Histogram
	latency  sdk.Histogram
	sampled  sdk.Counter
	// batch carries a stream's metric updates to the host in one call
	// (weft.record_metrics on Weft).
	batch sdk.MetricBatch

	// logged is what OnLog reads, in one host call (props indexes it).
	logged *sdk.PropertyQuery
	vals   [nProps][]byte

	// logOnly is the filter of every stream when nothing is logged per
	// request: it has no per-stream state, so it is shared.
	logOnly logFilter
	// filters is a slab of the filters that remember requests for logs.
	filters []filter
}

// The properties OnLog reads, in plugin.logged.
const (
	propCode = iota
	propRoute
	propReqSize
	propRespSize
	propDuration
	nProps
)

// routeCounters are one route's request counters by status (or status
// class), defined on first use.
type routeCounters struct {
	name    string
	classes [8]sdk.Counter // by code/100 (StatusClasses); 0 "unknown"
	defined [8]bool
	codes   map[int]sdk.Counter // by code (not StatusClasses)
	// lastCode and lastCounter are the code counted last (not
	// StatusClasses) and its counter, valid when lastSet.
	lastCode    int
	lastCounter sdk.Counter
	lastSet     bool
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	p := &plugin{cfg: cfg, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		routes: map[string]*routeCounters{}, other: &routeCounters{name: "other"}}
	p.logOnly = logFilter{p}
	p.logged = sdk.NewPropertyQuery(
		[]string{"response", "code"}, []string{"route_name"}, []string{"request", "size"},
		[]string{"response", "size"}, []string{"request", "duration"})
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

// NewHTTPFilter implements sdk.Plugin. Without request logs a stream needs
// only OnLog and no state of its own; with them, its filter remembers the
// request (from a slab: an allocation in the VM costs as much as the rest
// of the callback).
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter {
	if p.cfg.SampleRate <= 0 && !p.cfg.LogErrors {
		return p.logOnly
	}
	if len(p.filters) == 0 {
		p.filters = make([]filter, 32)
	}
	f := &p.filters[0]
	p.filters = p.filters[1:]
	f.p = p
	return f
}

// routeOf returns the counters of the route named r (bytes the host
// returned), defining the route on first use.
func (p *plugin) routeOf(r []byte) *routeCounters {
	if rc := p.last; rc != nil && rc.name == string(r) { // no allocation: a comparison
		return rc
	}
	rc, ok := p.routes[string(r)] // no allocation: a map index
	if !ok {
		if len(p.routes) >= p.cfg.MaxRoutes {
			return p.other
		}
		rc = &routeCounters{name: string(r)}
		p.routes[rc.name] = rc
	}
	p.last = rc
	return rc
}

// counter returns rc's request counter for status code, defining it on
// first use.
func (p *plugin) counter(rc *routeCounters, code int) sdk.Counter {
	if p.cfg.StatusClasses {
		i := 0 // "unknown"
		if code >= 100 && code <= 599 {
			i = code / 100
		}
		if !rc.defined[i] {
			rc.classes[i] = p.newCounter(rc.name, code)
			rc.defined[i] = true
		}
		return rc.classes[i]
	}
	if rc.lastSet && rc.lastCode == code {
		return rc.lastCounter
	}
	c, ok := rc.codes[code]
	if !ok {
		if rc.codes == nil {
			rc.codes = map[int]sdk.Counter{}
		}
		c = p.newCounter(rc.name, code)
		rc.codes[code] = c
	}
	rc.lastCode, rc.lastCounter, rc.lastSet = code, c, true
	return c
}

func (p *plugin) newCounter(route string, code int) sdk.Counter {
	c, err := sdk.NewCounter(p.cfg.requestsName(route, p.cfg.statusLabel(code)))
	if err != nil {
		sdk.Warnf("telemetry: defining a counter: %v", err)
	}
	return c
}

// logFilter is a stream's filter when no request is logged: metrics only.
type logFilter struct{ p *plugin }

// Stateless implements sdk.StatelessFilter: the filter reads what it
// records in OnLog and keeps nothing, so one value serves every stream
// (on Weft, one entry into the VM per request instead of three).
func (logFilter) Stateless() bool { return true }

// OnLog implements sdk.LogFilter.
func (f logFilter) OnLog(s *sdk.Stream) { f.p.record(s, nil) }

// filter remembers what the request looked like for a log line.
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

// OnLog implements sdk.LogFilter.
func (f *filter) OnLog(s *sdk.Stream) { f.p.record(s, f) }

func int64Value(b []byte) (int64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b)), true
}

// record records the metrics of the stream that ended and, when f is
// set, its log line.
func (p *plugin) record(s *sdk.Stream, f *filter) {
	v := p.vals[:]
	if err := s.Properties(p.logged, v); err != nil {
		clear(v)
	}
	code, _ := int64Value(v[propCode])
	r := v[propRoute]
	if len(r) == 0 {
		r = unknownRoute
	}
	rc := p.routeOf(r)
	b := &p.batch
	b.Inc(p.counter(rc, int(code)))
	if n, ok := int64Value(v[propReqSize]); ok {
		b.Record(p.reqSize, uint64(n))
	}
	if n, ok := int64Value(v[propRespSize]); ok {
		b.Record(p.respSize, uint64(n))
	}
	dur, _ := int64Value(v[propDuration])
	b.Record(p.latency, uint64(dur/1000))
	if f != nil && (f.sample || (p.cfg.LogErrors && code >= 500)) {
		b.Inc(p.sampled)
		sdk.Log(sdk.LogInfo, logLine(f.method, f.path, int(code), dur/1000, rc.name, f.headers))
	}
	if err := b.Flush(); err != nil {
		sdk.Debugf("telemetry: recording metrics: %v", err)
	}
	clear(v) // the values point into a buffer the next stream replaces
}

var unknownRoute = []byte("unknown")
