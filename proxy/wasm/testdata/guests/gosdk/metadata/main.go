// Command metadata is a conformance guest for metadata properties. On
// request headers it reads, and sends upstream:
//   - x-route-auth: route_metadata.filter_metadata["envoy.filters.http.wasm"].auth
//   - x-route-weight: ….weight, a number (an 8-byte double)
//   - x-cluster-location: cluster_metadata.filter_metadata.location as a map, "k=v,…"
//   - x-listener-team: xds.listener_metadata.filter_metadata.team.name
//
// On response headers, once the cluster and endpoint are chosen, it
// answers x-cluster-location (the same read) and x-host-zone
// (upstream_host_metadata.filter_metadata.host.zone) to the client.
//
// A property that is not found reads "NOTFOUND".
package main

import (
	"encoding/binary"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct{ types.DefaultHttpContext }

const ns = "envoy.filters.http.wasm"

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	set("x-route-auth", str([]string{"route_metadata", "filter_metadata", ns, "auth"}))
	weight := "NOTFOUND"
	if b, err := proxywasm.GetProperty([]string{"route_metadata", "filter_metadata", ns, "weight"}); err == nil && len(b) == 8 {
		weight = strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(b)), 'g', -1, 64)
	}
	set("x-route-weight", weight)
	set("x-cluster-location", clusterLocation())
	set("x-listener-team", str([]string{"xds", "listener_metadata", "filter_metadata", "team", "name"}))
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-cluster-location", clusterLocation()); err != nil {
		panic(err)
	}
	if err := proxywasm.AddHttpResponseHeader("x-host-zone", str([]string{"upstream_host_metadata", "filter_metadata", "host", "zone"})); err != nil {
		panic(err)
	}
	return types.ActionContinue
}

// clusterLocation reads cluster_metadata.filter_metadata.location as a
// map: "k=v,…" sorted, or NOTFOUND.
func clusterLocation() string {
	m, err := proxywasm.GetPropertyMap([]string{"cluster_metadata", "filter_metadata", "location"})
	if err != nil {
		return "NOTFOUND"
	}
	var kv []string
	for _, p := range m {
		kv = append(kv, p[0]+"="+p[1])
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func str(path []string) string {
	b, err := proxywasm.GetProperty(path)
	if err != nil {
		return "NOTFOUND"
	}
	return string(b)
}

func set(k, v string) {
	if err := proxywasm.AddHttpRequestHeader(k, v); err != nil {
		panic(err)
	}
}
