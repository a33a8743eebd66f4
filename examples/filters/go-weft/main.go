package main

import "github.com/weftmesh/weft/sdk"

func main() {}

func init() {
	sdk.Register(func([]byte) (sdk.Plugin, error) {
		sdk.Infof("go-weft example filter configured")
		return plugin{}, nil
	})
}

const (
	name = "x-weft-example"
	lang = "go-weft"
)

type plugin struct{}

func (plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{} }

type filter struct{}

func (filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	_ = s.RequestHeaders().Add(name, lang)
	return sdk.Continue
}

func (filter) OnResponseHeaders(s *sdk.Stream, _ bool) sdk.Action {
	h := s.ResponseHeaders()
	_ = h.Add(name, lang)
	if status, ok := h.Get(":status"); ok {
		_ = h.Set("x-weft-example-status", status)
	}
	return sdk.Continue
}
