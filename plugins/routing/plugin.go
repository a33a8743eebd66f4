package main

import (
	"math/rand/v2"

	"github.com/weftmesh/weft/sdk"
)

type plugin struct {
	cfg    *Config
	rng    *rand.Rand
	chosen map[string]sdk.Counter
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	p := &plugin{cfg: cfg, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), chosen: map[string]sdk.Counter{}}
	// One counter per version the config can choose, defined up front.
	versions := []string{cfg.Default}
	for _, r := range cfg.Rules {
		versions = append(versions, r.Version)
	}
	if cfg.Split != nil {
		for _, w := range cfg.Split.Versions {
			versions = append(versions, w.Version)
		}
	}
	for _, v := range versions {
		if _, ok := p.chosen[v]; ok || v == "" {
			continue
		}
		c, err := sdk.NewCounter("routing_chosen_total{version=" + v + "}")
		if err != nil {
			return nil, err
		}
		p.chosen[v] = c
	}
	return p, nil
}

// NewHTTPFilter implements sdk.Plugin.
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{p} }

type filter struct{ p *plugin }

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
	v, ok := p.cfg.choose(headers{h}, p.rng.Uint64())
	if !ok {
		if !p.cfg.TrustIncoming {
			_ = h.Remove(p.cfg.Header)
		}
		return sdk.Continue
	}
	_ = h.Set(p.cfg.Header, v)
	if c, ok := p.chosen[v]; ok {
		c.Inc()
	}
	return sdk.Continue
}
