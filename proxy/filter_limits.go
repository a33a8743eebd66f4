package proxy

import (
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/listener"
)

// maxFilterHeaders bounds the header fields filters write into one
// direction of a stream: the header count nginx and Envoy accept from a
// peer by default (100).
const maxFilterHeaders = 100

// filterLimits are the bounds on what a listener's filters add to a
// stream: no more than a peer may send it (issue 18: 2,000 added 60 KB
// headers once took the sidecar to 3.5 GB).
func (ls *listenerState) filterLimits() filter.Limits {
	l := ls.limits
	return filter.Limits{
		MaxHeaderBytes: orDefault(l.MaxHeaderBytes, listener.DefaultMaxHeaderBytes),
		MaxHeaders:     maxFilterHeaders,
		MaxBodyBytes:   orDefault(l.MaxBodyBytes, listener.DefaultMaxBodyBytes),
	}
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}
