package sdk_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// authPlugin answers 401 without an x-user header and otherwise asks the
// "users" cluster whether the user exists, pausing the stream meanwhile.
type authPlugin struct{ ticks int }

func (p *authPlugin) NewHTTPFilter(s *sdk.Stream) sdk.HTTPFilter { return &authFilter{} }
func (p *authPlugin) OnTick()                                    { p.ticks++ }

type authFilter struct{ done bool }

func (f *authFilter) OnRequestHeaders(s *sdk.Stream, eos bool) sdk.Action {
	user, ok := s.RequestHeaders().Get("x-user")
	if !ok {
		_ = s.SendLocalResponse(401, []byte("who are you?"), [][2]string{{"www-authenticate", "User"}})
		return sdk.Pause
	}
	if user == "panic" {
		panic("bad user")
	}
	_, err := sdk.DispatchHTTPCall("users", [][2]string{{":method", "GET"}, {":path", "/users/" + user}, {":authority", "users"}}, nil, time.Second,
		func(r *sdk.HTTPCallResponse) {
			if r.Err != nil || r.Status != 200 {
				_ = s.SendLocalResponse(403, nil, nil)
				return
			}
			_ = s.RequestHeaders().Set("x-user-name", string(r.Body))
			_ = s.Resume()
		})
	if err != nil {
		_ = s.SendLocalResponse(500, nil, nil)
	}
	return sdk.Pause
}

func (f *authFilter) OnDone(s *sdk.Stream) { f.done = true }

func startAuth(t *testing.T) *sdktest.Host {
	t.Helper()
	sdk.Register(func(cfg []byte) (sdk.Plugin, error) {
		if string(cfg) == "refuse" {
			return nil, errors.New("refused")
		}
		if err := sdk.SetTickPeriod(time.Second); err != nil {
			return nil, err
		}
		return &authPlugin{}, nil
	})
	return sdktest.New(t, sdktest.Options{Clusters: map[string]func(sdktest.CallRequest) sdktest.CallResponse{
		"users": func(r sdktest.CallRequest) sdktest.CallResponse {
			if r.Header(":path") == "/users/ann" {
				return sdktest.CallResponse{Status: 200, Body: []byte("Ann")}
			}
			return sdktest.CallResponse{Status: 404}
		},
	}})
}

func TestLocalResponseWithoutUser(t *testing.T) {
	h := startAuth(t)
	s := h.NewStream(sdktest.Req{})
	if a := s.RequestHeaders(); a != uint32(sdk.Pause) {
		t.Fatalf("action = %d", a)
	}
	if s.Local == nil || s.Local.Status != 401 || string(s.Local.Body) != "who are you?" {
		t.Fatalf("local = %+v", s.Local)
	}
	if v, _ := s.Local.Header("www-authenticate"); v != "User" {
		t.Errorf("www-authenticate = %q", v)
	}
}

func TestCallOutResumes(t *testing.T) {
	h := startAuth(t)
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"X-User", "ann"}}})
	s.Run(nil)
	if !s.Paused() || len(h.PendingCalls()) != 1 {
		t.Fatalf("paused %v, calls %d", s.Paused(), len(h.PendingCalls()))
	}
	if got := h.PendingCalls()[0].Header(":path"); got != "/users/ann" {
		t.Errorf("call path %q", got)
	}
	h.DeliverCalls()
	if s.Resumes != 1 {
		t.Fatalf("resumes = %d", s.Resumes)
	}
	if v, _ := s.Request.Header("x-user-name"); v != "Ann" {
		t.Errorf("x-user-name = %q", v)
	}
	s.Continue()
	if s.Paused() || !s.Forwarded() || s.Status() != 200 {
		t.Errorf("after continue: paused %v forwarded %v status %d", s.Paused(), s.Forwarded(), s.Status())
	}
}

func TestCallOutRejects(t *testing.T) {
	h := startAuth(t)
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"x-user", "bob"}}})
	s.RequestHeaders()
	h.DeliverCalls()
	if s.Local == nil || s.Local.Status != 403 || s.Resumes != 0 {
		t.Fatalf("local %+v resumes %d", s.Local, s.Resumes)
	}
}

func TestCallToGoneStreamIsDropped(t *testing.T) {
	h := startAuth(t)
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"x-user", "ann"}}})
	s.RequestHeaders()
	s.Finish()
	if n := h.DeliverCalls(); n != 1 {
		t.Fatalf("delivered %d", n)
	}
	if s.Resumes != 0 {
		t.Error("a deleted stream was resumed")
	}
}

func TestPanicBecomesLocal500(t *testing.T) {
	h := startAuth(t)
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"x-user", "panic"}}})
	s.RequestHeaders()
	if s.Local == nil || s.Local.Status != 500 {
		t.Fatalf("local = %+v", s.Local)
	}
	if !h.LogContains("OnRequestHeaders panicked: bad user") {
		t.Errorf("logs = %v", h.Logs())
	}
}

func TestTickAndRefusal(t *testing.T) {
	h := startAuth(t)
	if h.TickPeriod() != time.Second {
		t.Errorf("tick period = %v", h.TickPeriod())
	}
	h.Tick()
	h.Tick()
	h.Close()
	_, err := sdktest.Start(sdktest.Options{PluginConfig: []byte("refuse")})
	if err == nil || !strings.Contains(err.Error(), "configure") {
		t.Fatalf("refused config: %v", err)
	}
}

func TestStatusErrors(t *testing.T) {
	var err error = sdk.StatusNotFound
	if !errors.Is(err, sdk.StatusNotFound) || err.Error() != "proxy-wasm: not found" {
		t.Errorf("status error %v", err)
	}
	if sdk.Status(99).Error() != "proxy-wasm: status 99" {
		t.Error(sdk.Status(99).Error())
	}
}
