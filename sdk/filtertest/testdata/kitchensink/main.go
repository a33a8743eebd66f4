// Command kitchensink is a test filter that exercises most of the Go SDK;
// the request path picks the behaviour.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() { sdk.Register(newPlugin) }

type config struct {
	Greeting string `json:"greeting"`
	Refuse   bool   `json:"refuse"`
}

type plugin struct {
	cfg      config
	requests sdk.Counter
	sizes    sdk.Histogram
	inflight sdk.Gauge
	queue    sdk.Queue
	waiting  []*sdk.Stream
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	p := &plugin{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &p.cfg); err != nil {
			return nil, err
		}
	}
	if p.cfg.Refuse {
		return nil, errors.New("refused by config")
	}
	var err error
	if p.requests, err = sdk.NewCounter("requests"); err != nil {
		return nil, err
	}
	if p.sizes, err = sdk.NewHistogram("request_body_bytes"); err != nil {
		return nil, err
	}
	if p.inflight, err = sdk.NewGauge("inflight"); err != nil {
		return nil, err
	}
	if p.queue, err = sdk.RegisterQueue("items"); err != nil {
		return nil, err
	}
	sdk.Infof("kitchensink configured, greeting=%q", p.cfg.Greeting)
	return p, nil
}

func (p *plugin) NewHTTPFilter(s *sdk.Stream) sdk.HTTPFilter { return &filter{p: p} }

// OnTick resumes the streams parked by /tick.
func (p *plugin) OnTick() {
	for _, s := range p.waiting {
		_ = s.RequestHeaders().Set("x-ticked", "yes")
		_ = s.Resume()
	}
	p.waiting = p.waiting[:0]
	_ = sdk.SetTickPeriod(0)
}

func (p *plugin) OnQueueReady(q sdk.Queue) {
	for {
		item, err := q.Dequeue()
		if err != nil {
			return
		}
		sdk.Infof("queue item: %s", item)
	}
}

type filter struct {
	p    *plugin
	path string
}

func (f *filter) OnRequestHeaders(s *sdk.Stream, eos bool) sdk.Action {
	f.p.requests.Inc()
	f.p.inflight.Add(1)
	h := s.RequestHeaders()
	f.path, _ = h.Get(":path")
	sdk.Infof("request %s", f.path)
	_ = h.Set("x-filtered", "yes")
	_ = h.Remove("x-remove-me")
	if f.p.cfg.Greeting != "" {
		_ = h.Add("x-greeting", f.p.cfg.Greeting)
	}
	if n, err := h.Len(); err == nil {
		_ = h.Set("x-header-count", strconv.Itoa(n))
	}
	route, _, _ := strings.Cut(f.path, "?")
	switch route {
	case "/deny":
		_ = s.SendLocalResponse(403, []byte("denied\n"), [][2]string{{"x-denied", "1"}})
		return sdk.Pause
	case "/callout":
		_, err := sdk.DispatchHTTPCall("backend", [][2]string{
			{":method", "GET"}, {":path", "/info"}, {":authority", "backend.test"}, {"x-from", "kitchensink"},
		}, nil, 2*time.Second, func(r *sdk.HTTPCallResponse) {
			if r.Err != nil {
				_ = s.SendLocalResponse(502, []byte("call-out failed: "+r.Reason+"\n"), nil)
				return
			}
			_ = s.RequestHeaders().Set("x-callout-status", strconv.Itoa(r.Status))
			_ = s.RequestHeaders().Set("x-callout-body", string(r.Body))
			_ = s.Resume()
		})
		if err != nil {
			_ = s.SendLocalResponse(500, []byte(err.Error()), nil)
		}
		return sdk.Pause
	case "/tick":
		f.p.waiting = append(f.p.waiting, s)
		_ = sdk.SetTickPeriod(10 * time.Millisecond)
		return sdk.Pause
	case "/enqueue":
		_ = f.p.queue.Enqueue([]byte("hello queue"))
	case "/shared":
		for {
			v, cas, err := sdk.GetSharedData("hits")
			var n uint64
			if err == nil && len(v) == 8 {
				n = binary.LittleEndian.Uint64(v)
			}
			n++
			if err := sdk.SetSharedData("hits", binary.LittleEndian.AppendUint64(nil, n), cas); err == nil {
				_ = h.Set("x-hits", strconv.FormatUint(n, 10))
				break
			} else if !errors.Is(err, sdk.StatusCasMismatch) {
				break
			}
		}
	case "/panic":
		panic("boom")
	case "/props":
		name, _ := sdk.PropertyString("plugin_name")
		path, _ := s.Property("request", "path")
		_ = h.Set("x-plugin-name", name)
		_ = h.Set("x-prop-path", string(path))
		_ = s.SetProperty([]byte("set-by-filter"), "kitchensink", "mark")
		mark, _ := s.Property("kitchensink", "mark")
		_ = h.Set("x-prop-mark", string(mark))
		all, _ := h.All()
		_ = h.Set("x-all-count", strconv.Itoa(len(all)))
	}
	return sdk.Continue
}

func (f *filter) OnRequestBody(s *sdk.Stream, size int, eos bool) sdk.Action {
	f.p.sizes.Record(uint64(size))
	if f.path == "/upper" {
		b, err := s.RequestBody()
		if err == nil {
			_ = s.SetRequestBody(bytes.ToUpper(b))
		}
	}
	return sdk.Continue
}

func (f *filter) OnResponseHeaders(s *sdk.Stream, eos bool) sdk.Action {
	_ = s.ResponseHeaders().Set("x-resp-filter", "1")
	if st, ok := s.ResponseHeaders().Get(":status"); ok {
		_ = s.ResponseHeaders().Set("x-seen-status", st)
	}
	return sdk.Continue
}

func (f *filter) OnResponseBody(s *sdk.Stream, size int, eos bool) sdk.Action {
	if f.path == "/upper" {
		b, _ := s.ResponseBody()
		_ = s.SetResponseBody(append(b, "!"...))
	}
	return sdk.Continue
}

func (f *filter) OnLog(s *sdk.Stream) {
	code, err := s.Property("response", "code")
	if err == nil && len(code) == 8 {
		sdk.Debugf("log %s %d", f.path, binary.LittleEndian.Uint64(code))
	}
}

func (f *filter) OnDone(s *sdk.Stream) { f.p.inflight.Add(-1) }
