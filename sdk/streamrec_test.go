package sdk_test

import (
	"errors"
	"testing"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// kindsPlugin alternates two filter types with different callbacks and
// keeps every stream's handle.
type kindsPlugin struct {
	n       int
	streams []*sdk.Stream
	calls   []string
}

func (p *kindsPlugin) NewHTTPFilter(s *sdk.Stream) sdk.HTTPFilter {
	p.n++
	p.streams = append(p.streams, s)
	if p.n%2 == 1 {
		return &reqFilter{p: p}
	}
	return respFilter{p: p}
}

type reqFilter struct{ p *kindsPlugin }

func (f *reqFilter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	f.p.calls = append(f.p.calls, "req")
	return sdk.Continue
}
func (f *reqFilter) OnLog(s *sdk.Stream) { f.p.calls = append(f.p.calls, "log") }

type respFilter struct{ p *kindsPlugin }

func (f respFilter) OnResponseHeaders(s *sdk.Stream, _ bool) sdk.Action {
	f.p.calls = append(f.p.calls, "resp")
	return sdk.Continue
}
func (f respFilter) OnDone(s *sdk.Stream) { f.p.calls = append(f.p.calls, "done") }

// TestStreamRecords: streams of one plugin whose filters are of different
// types each get their own type's callbacks (the SDK caches what a type
// implements); a finished stream's handle reports ErrStreamGone even once
// a later stream reuses its record, and the later stream's handle works.
func TestStreamRecords(t *testing.T) {
	p := &kindsPlugin{}
	sdk.Register(func([]byte) (sdk.Plugin, error) { return p, nil })
	h := sdktest.New(t, sdktest.Options{})
	var want []string
	for i := range 5 {
		s := h.NewStream(sdktest.Req{})
		s.RequestHeaders()
		s.ResponseHeaders(200, nil, nil)
		s.Finish()
		if i%2 == 0 {
			want = append(want, "req", "log")
		} else {
			want = append(want, "resp", "done")
		}
	}
	if len(p.calls) != len(want) {
		t.Fatalf("callbacks %v, want %v", p.calls, want)
	}
	for i := range want {
		if p.calls[i] != want[i] {
			t.Fatalf("callbacks %v, want %v", p.calls, want)
		}
	}
	live := h.NewStream(sdktest.Req{})
	last := p.streams[len(p.streams)-1]
	for i, old := range p.streams[:len(p.streams)-1] {
		if old == last {
			t.Fatalf("stream %d's handle was reused", i)
		}
		if err := old.Resume(); !errors.Is(err, sdk.ErrStreamGone) {
			t.Errorf("stream %d: Resume after delete = %v, want ErrStreamGone", i, err)
		}
		if old.Filter() != nil {
			t.Errorf("stream %d: Filter after delete is set", i)
		}
		if _, ok := old.RequestHeaders().Get(":path"); ok {
			t.Errorf("stream %d: headers readable after delete", i)
		}
	}
	if last.ID() != live.ID() || last.Filter() == nil {
		t.Fatalf("live stream: id %d (host %d), filter %v", last.ID(), live.ID(), last.Filter())
	}
	if v, ok := last.RequestHeaders().Get(":path"); !ok || v != "/" {
		t.Errorf("live stream's :path = %q, %v", v, ok)
	}
	live.Finish()
	if err := last.Resume(); !errors.Is(err, sdk.ErrStreamGone) {
		t.Errorf("Resume after delete = %v, want ErrStreamGone", err)
	}
}
