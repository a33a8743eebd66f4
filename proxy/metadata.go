package proxy

import (
	"regexp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/wasm"
)

// Metadata and stats tags: config the Wasm host reads through the proxy.

// filterMetadata is m's filter_metadata (nil when m is).
func filterMetadata(m *config.Metadata) map[string]map[string]any {
	if m == nil {
		return nil
	}
	return m.FilterMetadata
}

// hostMetadata maps each endpoint that has metadata to its
// filter_metadata (nil when none has).
func hostMetadata(eps []config.Endpoint) map[string]map[string]map[string]any {
	var out map[string]map[string]map[string]any
	for _, e := range eps {
		if e.Metadata == nil {
			continue
		}
		if out == nil {
			out = map[string]map[string]map[string]any{}
		}
		out[e.Address] = e.Metadata.FilterMetadata
	}
	return out
}

// stampMetadata gives a new stream its listener's metadata and, when a
// route of the listener (or the one cluster of a route) has metadata, the
// metadata of the route the request matches now and of its cluster: Envoy
// chooses the route (and so a single cluster) before the HTTP filters run,
// so they read route_metadata and cluster_metadata in on_request_headers;
// weft's listener filters run before routing, and routing sets both again
// afterwards.
func (ls *listenerState) stampMetadata(s *filter.Stream) {
	s.ListenerMetadata = ls.metadata
	if ls.routeMetadata && ls.table != nil {
		if r := ls.table.Match(s.Request); r != nil {
			s.RouteMetadata = r.Metadata
			if rs := ls.routes[r]; rs != nil {
				s.ClusterMetadata = rs.clusterMetadata
			}
		}
	}
}

// statsTags compiles the config's stats_tags (validated: they compile).
func statsTags(cfg *config.Config) []wasm.StatsTag {
	out := make([]wasm.StatsTag, 0, len(cfg.StatsTags))
	for _, st := range cfg.StatsTags {
		if re, err := regexp.Compile(st.Regex); err == nil {
			out = append(out, wasm.StatsTag{Name: st.TagName, Regex: re})
		}
	}
	return out
}
