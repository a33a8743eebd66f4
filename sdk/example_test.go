package sdk_test

import (
	"fmt"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// greeter adds a header with the configured greeting to every request.
type greeter struct{ greeting string }

func (g *greeter) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return g }

func (g *greeter) OnRequestHeaders(s *sdk.Stream, endOfStream bool) sdk.Action {
	_ = s.RequestHeaders().Set("x-greeting", g.greeting)
	return sdk.Continue
}

// A filter is a main package that registers its plugin in init; build it
// with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared. Here the
// emulated host of sdktest runs it natively.
func ExampleRegister() {
	sdk.Register(func(config []byte) (sdk.Plugin, error) {
		return &greeter{greeting: string(config)}, nil
	})

	h, err := sdktest.Start(sdktest.Options{PluginConfig: []byte("hello")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	s := h.NewStream(sdktest.Req{Path: "/"})
	s.Run(nil)
	v, _ := s.Request.Header("x-greeting")
	fmt.Println(v, s.Status())
	// Output: hello 200
}

// shortCircuit answers /healthz itself.
type shortCircuit struct{}

func (shortCircuit) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return shortCircuit{} }

func (shortCircuit) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	if p, _ := s.RequestHeaders().Get(":path"); p == "/healthz" {
		_ = s.SendLocalResponse(200, []byte("ok\n"), [][2]string{{"content-type", "text/plain"}})
		return sdk.Pause
	}
	return sdk.Continue
}

func ExampleStream_SendLocalResponse() {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return shortCircuit{}, nil })
	h, _ := sdktest.Start(sdktest.Options{})
	defer h.Close()
	s := h.NewStream(sdktest.Req{Path: "/healthz"})
	s.Run(nil)
	fmt.Println(s.Status(), s.Forwarded())
	// Output: 200 false
}

func ExampleNewCounter() {
	sdk.Register(func([]byte) (sdk.Plugin, error) {
		c, err := sdk.NewCounter("requests_total")
		if err != nil {
			return nil, err
		}
		return counting{c}, nil
	})
	h, _ := sdktest.Start(sdktest.Options{})
	defer h.Close()
	for range 3 {
		h.NewStream(sdktest.Req{}).Run(nil)
	}
	fmt.Println(h.Metric("requests_total").Value)
	// Output: 3
}

type counting struct{ c sdk.Counter }

func (c counting) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return c }
func (c counting) OnRequestHeaders(*sdk.Stream, bool) sdk.Action {
	c.c.Inc()
	return sdk.Continue
}
