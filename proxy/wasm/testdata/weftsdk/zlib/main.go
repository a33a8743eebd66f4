// Command zlib is the Weft SDK twin of the Go SDK guest gosdk/zlib, for
// Envoy's compress and uncompress foreign functions: a request's
// x-compress header is compressed, then uncompressed; upstream gets
// x-roundtrip (the result) and x-compressed (the compressed bytes, hex).
// x-uncompress-bad sends garbage to uncompress: x-uncompress-error carries
// the error.
package main

import (
	"encoding/hex"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return plugin{}, nil })
}

type plugin struct{}

func (plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return stream{} }

type stream struct{}

func (stream) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	h := s.RequestHeaders()
	if v, ok := h.Get("x-compress"); ok {
		c, err := sdk.CallForeignFunction("compress", []byte(v))
		must(err)
		back, err := sdk.CallForeignFunction("uncompress", c)
		must(err)
		must(h.Add("x-compressed", hex.EncodeToString(c)))
		must(h.Add("x-roundtrip", string(back)))
	}
	if _, ok := h.Get("x-uncompress-bad"); ok {
		_, err := sdk.CallForeignFunction("uncompress", []byte("not zlib"))
		msg := "none"
		if err != nil {
			msg = err.Error()
		}
		must(h.Add("x-uncompress-error", msg))
	}
	return sdk.Continue
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
