// Command metadata is the Weft SDK twin of the Go SDK guest gosdk/metadata:
// metadata properties. On request headers it reads, and sends upstream:
//   - x-route-auth: route_metadata.filter_metadata["envoy.filters.http.wasm"].auth
//   - x-route-weight: ….weight, a number (an 8-byte little-endian double)
//   - x-cluster-location: cluster_metadata.filter_metadata.location, a
//     Proxy-Wasm map, as "k=v,…" sorted
//   - x-listener-team: xds.listener_metadata.filter_metadata.team.name
//
// On response headers it answers x-cluster-location (the same read) and
// x-host-zone (upstream_host_metadata.filter_metadata.host.zone). A
// property that is not found reads "NOTFOUND".
package main

import (
	"encoding/binary"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return plugin{}, nil })
}

type plugin struct{}

func (plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{} }

type filter struct{}

const ns = "envoy.filters.http.wasm"

func (filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	h := s.RequestHeaders()
	weight := "NOTFOUND"
	if b, err := s.Property("route_metadata", "filter_metadata", ns, "weight"); err == nil && len(b) == 8 {
		weight = strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(b)), 'g', -1, 64)
	}
	for _, kv := range [][2]string{
		{"x-route-auth", str(s, "route_metadata", "filter_metadata", ns, "auth")},
		{"x-route-weight", weight},
		{"x-cluster-location", clusterLocation(s)},
		{"x-listener-team", str(s, "xds", "listener_metadata", "filter_metadata", "team", "name")},
	} {
		must(h.Add(kv[0], kv[1]))
	}
	return sdk.Continue
}

func (filter) OnResponseHeaders(s *sdk.Stream, _ bool) sdk.Action {
	h := s.ResponseHeaders()
	must(h.Add("x-cluster-location", clusterLocation(s)))
	must(h.Add("x-host-zone", str(s, "upstream_host_metadata", "filter_metadata", "host", "zone")))
	return sdk.Continue
}

// clusterLocation decodes the Proxy-Wasm map at
// cluster_metadata.filter_metadata.location (u32 count, count × (u32 key
// size, u32 value size), then each key and value with a NUL after it).
func clusterLocation(s *sdk.Stream) string {
	b, err := s.Property("cluster_metadata", "filter_metadata", "location")
	if err != nil || len(b) < 4 {
		return "NOTFOUND"
	}
	n := int(binary.LittleEndian.Uint32(b))
	if len(b) < 4+8*n {
		panic("metadata: short map")
	}
	data := b[4+8*n:]
	var kv []string
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if len(data) < kl+vl+2 {
			panic("metadata: short map")
		}
		kv = append(kv, string(data[:kl])+"="+string(data[kl+1:kl+1+vl]))
		data = data[kl+vl+2:]
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func str(s *sdk.Stream, path ...string) string {
	b, err := s.Property(path...)
	if err != nil {
		return "NOTFOUND"
	}
	return string(b)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
