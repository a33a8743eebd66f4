package main

import (
	"math/rand/v2"

	"github.com/weftmesh/weft/sdk"
)

type plugin struct {
	cfg *Config
	rng *rand.Rand
	// chosen counts each of cfg.choices (one counter per version: choices
	// naming the same version share it).
	chosen []sdk.Counter
	// req is the request being chosen for: the chooser takes it as an
	// interface, and a pointer to it converts without an allocation (a
	// headers value would be copied to the heap on every request).
	req headers
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	p := &plugin{cfg: cfg, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), chosen: make([]sdk.Counter, len(cfg.choices))}
	// One counter per version the config can choose, defined up front.
	byVersion := map[string]sdk.Counter{}
	for i, v := range cfg.choices {
		c, ok := byVersion[v]
		if !ok {
			if c, err = sdk.NewCounter("routing_chosen_total{version=" + v + "}"); err != nil {
				return nil, err
			}
			byVersion[v] = c
		}
		p.chosen[i] = c
	}
	return p, nil
}

// NewHTTPFilter implements sdk.Plugin.
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{p} }

type filter struct{ p *plugin }

// Stateless implements sdk.StatelessFilter: the filter keeps nothing per
// stream and never pauses one, so one value serves every stream (on Weft,
// one entry into the VM per request instead of three).
func (filter) Stateless() bool { return true }

// headers adapts a stream's request headers to the chooser.
type headers struct{ h sdk.HeaderMap }

func (h headers) header(name string) (string, bool) { return h.h.Get(name) }

// OnRequestHeaders sets the version header.
func (f filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	p := f.p
	h := s.RequestHeaders()
	if p.cfg.TrustIncoming {
		if v, ok := h.Get(p.cfg.Header); ok && v != "" {
			return sdk.Continue
		}
	}
	p.req.h = h
	i := p.cfg.chooseIndex(&p.req, p.rng)
	p.req.h = sdk.HeaderMap{}
	if i < 0 {
		if !p.cfg.TrustIncoming {
			_ = h.Remove(p.cfg.Header)
		}
		return sdk.Continue
	}
	_ = h.Set(p.cfg.Header, p.cfg.choices[i])
	p.chosen[i].Inc()
	return sdk.Continue
}
