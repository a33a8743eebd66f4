// Command callbacks is a test and benchmark guest written with Weft's Go
// SDK whose stream filter implements the callbacks its plugin
// configuration names, so the SDK declares only those to the host
// (weft.stream_callbacks):
//
//   - "noop": a filter with no callback (every stream passes untouched);
//   - "headers": OnRequestHeaders only, which sets request header
//     x-weftsdk: seen;
//   - "log": OnRequestHeaders as above and OnLog, which logs
//     "weftsdk on_log" at error level;
//   - "nil": the plugin makes no filter for the stream;
//   - "stateless": OnRequestHeaders as "headers" (and a 403 when the
//     request has x-deny), from one value that says it is a
//     sdk.StatelessFilter, so Weft creates no context for the plugin's
//     later streams.
package main

import (
	"fmt"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() {
	sdk.Register(func(cfg []byte) (sdk.Plugin, error) {
		switch k := string(cfg); k {
		case "noop", "headers", "log", "nil", "stateless":
			return plugin{kind: k}, nil
		default:
			return nil, fmt.Errorf("unknown filter kind %q", k)
		}
	})
}

type plugin struct{ kind string }

func (p plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter {
	switch p.kind {
	case "noop":
		return noop{}
	case "headers":
		return headers{}
	case "log":
		return logged{}
	case "stateless":
		return stateless{}
	}
	return nil
}

type noop struct{}

type headers struct{}

func (headers) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	if err := s.RequestHeaders().Set("x-weftsdk", "seen"); err != nil {
		sdk.Errorf("set header: %v", err)
	}
	return sdk.Continue
}

type logged struct{ headers }

func (logged) OnLog(*sdk.Stream) { sdk.Errorf("weftsdk on_log") }

type stateless struct{}

func (stateless) Stateless() bool { return true }

func (stateless) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	if _, deny := s.RequestHeaders().Get("x-deny"); deny {
		_ = s.SendLocalResponse(403, []byte("denied\n"), nil)
		return sdk.Pause
	}
	return headers{}.OnRequestHeaders(s, false)
}
