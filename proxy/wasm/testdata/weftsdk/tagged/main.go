// Command tagged is the Weft SDK twin of the Go SDK guest gosdk/tagged:
// metrics whose names carry tags. On request headers it adds one to
// counter tagged_requests_method=METHOD_user=USER, adds the content-length
// to gauge tagged_last_size_user=USER and records it in histogram
// tagged_sizes_user=USER (x-user's value; "" when absent).
package main

import (
	"strconv"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return plugin{}, nil })
}

type plugin struct{}

func (plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{} }

type filter struct{}

func (filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	h := s.RequestHeaders()
	method, _ := h.Get(":method")
	user, _ := h.Get("x-user")
	size, _ := h.Get("content-length")
	n, _ := strconv.Atoi(size)
	c, err := sdk.NewCounter("tagged_requests_method=" + method + "_user=" + user)
	must(err)
	c.Add(1)
	g, err := sdk.NewGauge("tagged_last_size_user=" + user)
	must(err)
	g.Add(int64(n))
	hi, err := sdk.NewHistogram("tagged_sizes_user=" + user)
	must(err)
	hi.Record(uint64(n))
	return sdk.Continue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
