package proxy

import (
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/tcpproxy"
	"github.com/weftmesh/weft/proxy/wasm"
)

// wasmNetworkFilter runs a Wasm plugin as a network (L4) filter of a tcp
// listener: the glue between tcpproxy's ConnFilterFactory and the plugin.
type wasmNetworkFilter struct{ p *wasm.Plugin }

// NewConnFilter implements tcpproxy.ConnFilterFactory.
func (w wasmNetworkFilter) NewConnFilter(s *filter.Stream) tcpproxy.ConnFilter {
	return w.p.NewConnFilter(s)
}

// networkFilters are the tcp listener's filters, in order.
func networkFilters(s *snapshot, names []string) []tcpproxy.ConnFilterFactory {
	if len(names) == 0 {
		return nil
	}
	out := make([]tcpproxy.ConnFilterFactory, 0, len(names))
	for _, n := range names {
		if pl := s.plugins[n]; pl != nil { // nil: fail_open and not loaded
			out = append(out, wasmNetworkFilter{pl})
		}
	}
	return out
}
