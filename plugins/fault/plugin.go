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

// NewHTTPFilter implements sdk.Plugin. Without delays the filter keeps
// nothing per stream, so one value serves them all (sdk.StatelessFilter:
// one entry into the VM per request instead of four on Weft); a delay
// keeps its stream, resumes it later and drops it when it ends (OnDone),
// so each stream then has a context of its own.
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter {
	if p.cfg.Delay == nil {
		return abortFilter{p}
	}
	return filter{p}
}

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

// abortFilter is every stream's filter when no delay is configured.
type abortFilter struct{ p *plugin }

// Stateless implements sdk.StatelessFilter: an abort is answered within
// the stream's own callback, and nothing is kept.
func (abortFilter) Stateless() bool { return true }

// OnRequestHeaders decides whether the request is aborted.
func (f abortFilter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	return f.p.onRequestHeaders(s)
}

// filter is a stream's filter when delays are configured.
type filter struct{ p *plugin }

// OnRequestHeaders decides the request's faults.
func (f filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	return f.p.onRequestHeaders(s)
}

// draw returns a uniform number in [0, 100) for a share of percent, or
// one that decides alike when the share alone decides (none, or all of
// the requests): no random number is drawn that cannot change the
// outcome.
func (p *plugin) draw(percent float64) float64 {
	switch {
	case percent <= 0:
		return 100
	case percent >= 100:
		return 0
	}
	return p.rng.Float64() * 100
}

// onRequestHeaders decides the request's faults.
func (p *plugin) onRequestHeaders(s *sdk.Stream) sdk.Action {
	if len(p.cfg.Headers) > 0 {
		h := s.RequestHeaders()
		for _, m := range p.cfg.Headers {
			v, ok := h.Get(m.Name)
			if !ok || (m.Value != "" && v != m.Value) {
				return sdk.Continue
			}
		}
	}
	var delayDraw, abortDraw float64 = 100, 100
	if c := p.cfg.Delay; c != nil {
		delayDraw = p.draw(c.Percent)
	}
	if c := p.cfg.Abort; c != nil {
		abortDraw = p.draw(c.Percent)
	}
	d := p.cfg.decide(delayDraw, abortDraw)
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
