package proxy

import (
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
)

// filterMetadata is m's filter_metadata (nil when m is).
func filterMetadata(m *config.Metadata) map[string]map[string]any {
	if m == nil {
		return nil
	}
	return m.FilterMetadata
}

// stampMetadata gives a new stream its listener's metadata and, when a
// route of the listener has metadata, the metadata of the route the
// request matches now: Envoy chooses the route before the HTTP filters
// run, so they read route_metadata in on_request_headers; weft's listener
// filters run before routing, and routing sets it again afterwards.
func (ls *listenerState) stampMetadata(s *filter.Stream) {
	s.ListenerMetadata = ls.metadata
	if ls.routeMetadata && ls.table != nil {
		if r := ls.table.Match(s.Request); r != nil {
			s.RouteMetadata = r.Metadata
		}
	}
}
