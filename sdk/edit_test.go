package sdk_test

import (
	"testing"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// editFilter applies its edits to the request headers.
type editFilter struct{ edits []sdk.HeaderEdit }

func (f editFilter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	if err := s.RequestHeaders().Edit(f.edits...); err != nil {
		sdk.Errorf("edit: %v", err)
	}
	return sdk.Continue
}

type editPlugin struct{ edits []sdk.HeaderEdit }

func (p editPlugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return editFilter(p) }

// TestHeaderEditFallback: on a host without weft.edit_headers (the
// emulated host, like Envoy) Edit writes one header at a time, in order,
// and asks the host once. (Weft's batch is tested through the real host in
// proxy/wasm, TestForeignEditHeaders.)
func TestHeaderEditFallback(t *testing.T) {
	edits := []sdk.HeaderEdit{
		{Op: sdk.HeaderRemove, Name: "x-b"},
		{Op: sdk.HeaderSet, Name: "x-a", Value: "1"},
		{Op: sdk.HeaderAdd, Name: "x-c", Value: "2"},
		{Op: sdk.HeaderSet, Name: "x-c", Value: "3"},
	}
	sdk.Register(func([]byte) (sdk.Plugin, error) { return editPlugin{edits}, nil })
	h := sdktest.New(t, sdktest.Options{})
	for i := range 2 {
		s := h.NewStream(sdktest.Req{Headers: [][2]string{{"x-a", "0"}, {"x-b", "gone"}}})
		s.Run(nil)
		for name, want := range map[string]string{"x-a": "1", "x-b": "", "x-c": "3"} {
			if got, _ := s.Request.Header(name); got != want {
				t.Errorf("stream %d: %s = %q, want %q", i, name, got, want)
			}
		}
	}
	if n := h.ForeignCalls("weft.edit_headers"); n != 1 {
		t.Errorf("weft.edit_headers asked %d times, want once", n)
	}
	bad := editFilter{[]sdk.HeaderEdit{{Op: sdk.HeaderAdd + 1, Name: "x"}}}
	sdk.Register(func([]byte) (sdk.Plugin, error) { return editPlugin(bad), nil })
	h = sdktest.New(t, sdktest.Options{})
	s := h.NewStream(sdktest.Req{})
	s.Run(nil)
	if !h.LogContains("edit: ") {
		t.Error("an unknown op was not refused")
	}
}
