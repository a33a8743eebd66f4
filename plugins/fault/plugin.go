package main

import (
	"math/rand/v2"
	"time"

	"github.com/weftmesh/weft/sdk"
)

// plugin holds the streams being delayed in one VM.
type plugin struct {
	cfg     *Config
	rng     *rand.Rand
	delayed []delayed
	ticking bool

	delays, aborts sdk.Counter
	active         sdk.Gauge
}

// delayed is a paused stream and when it may go on.
type delayed struct {
	s     *sdk.Stream
	until time.Time
	abort bool
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	p := &plugin{cfg: cfg, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if p.delays, err = sdk.NewCounter("fault_delays_total"); err != nil {
		return nil, err
	}
	if p.aborts, err = sdk.NewCounter("fault_aborts_total"); err != nil {
		return nil, err
	}
	if p.active, err = sdk.NewGauge("fault_active_delays"); err != nil {
		return nil, err
	}
	return p, nil
}

// NewHTTPFilter implements sdk.Plugin.
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{p} }

// OnTick lets the delayed streams whose time has come go on (or aborts
// them).
func (p *plugin) OnTick() {
	now := sdk.Now()
	kept := p.delayed[:0]
	for _, d := range p.delayed {
		if now.Before(d.until) {
			kept = append(kept, d)
			continue
		}
		p.active.Add(-1)
		if d.abort {
			p.abort(d.s)
		} else {
			_ = d.s.Resume()
		}
	}
	clear(p.delayed[len(kept):])
	p.delayed = kept
	if len(p.delayed) == 0 && p.ticking {
		p.ticking = false
		_ = sdk.SetTickPeriod(0)
	}
}

func (p *plugin) abort(s *sdk.Stream) {
	p.aborts.Inc()
	a := p.cfg.Abort
	body := a.Body
	if body == "" {
		body = "fault filter abort\n"
	}
	_ = s.SendLocalResponseDetails(a.Status, "fault_filter_abort", []byte(body), [][2]string{{"content-type", "text/plain"}, {"x-weft-fault", "abort"}})
}

type filter struct{ p *plugin }

// OnRequestHeaders decides the request's faults.
func (f filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	p := f.p
	h := s.RequestHeaders()
	for _, m := range p.cfg.Headers {
		v, ok := h.Get(m.Name)
		if !ok || (m.Value != "" && v != m.Value) {
			return sdk.Continue
		}
	}
	d := p.cfg.decide(p.rng.Float64()*100, p.rng.Float64()*100)
	if d.delay > 0 {
		p.delays.Inc()
		p.active.Add(1)
		p.delayed = append(p.delayed, delayed{s: s, until: sdk.Now().Add(d.delay), abort: d.abort})
		if !p.ticking {
			p.ticking = true
			_ = sdk.SetTickPeriod(p.cfg.tickPeriod())
		}
		return sdk.Pause
	}
	if d.abort {
		p.abort(s)
		return sdk.Pause
	}
	return sdk.Continue
}

// OnDone drops a stream that ended while delayed (the client went away).
func (f filter) OnDone(s *sdk.Stream) {
	p := f.p
	for i, d := range p.delayed {
		if d.s == s {
			p.active.Add(-1)
			p.delayed = append(p.delayed[:i], p.delayed[i+1:]...)
			return
		}
	}
}
