package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftmesh/weft/bench/report"
)

// Scenario is one thing to benchmark: what to start and which URL to load.
type Scenario struct {
	// Name is what -scenarios selects and the report shows.
	Name string
	// Description is one line for the report and `weft bench list`.
	Description string
	// Setup writes configs and starts what the scenario needs through env
	// (env.StartUpstream, env.StartProcess, env.StartWeft), and returns the
	// URL the load generator loads. Processes started through env are
	// measured and always stopped after the run, also when Setup fails.
	// Return an error wrapping ErrSkip (see Skipf) when something the
	// scenario needs is absent.
	Setup func(ctx context.Context, env *Env) (url string, err error)
	// Protocol is what the load generator speaks to the URL: "" or
	// loadgen.HTTP1 (HTTP/1.1, one request per connection at a time),
	// loadgen.H2C (HTTP/2 without TLS), grpcload.Unary or grpcload.Stream
	// (gRPC calls or messages on one stream; see bench/grpcload). The
	// multiplexing ones put the -c requests in flight on Conns connections.
	Protocol string
	// Conns is the connections a multiplexing Protocol uses
	// (loadgen.DefaultConns when zero).
	Conns int
	// Teardown, when set, runs before env stops the scenario's processes.
	Teardown func(env *Env) error
	// Compare names the scenario of the same run this one adds something
	// to (weft for a filter, weft-2hop-plain for mTLS); the report shows
	// the ratios against it. Empty: only the ratios against direct.
	Compare string
	// Quick puts the scenario in the quick mode's default set (what CI
	// runs): cheap to set up, and its check means something.
	Quick bool
	// Check, when set, replaces quick mode's default check (answers, no
	// failed request) for a scenario whose failures are the point (a flaky
	// upstream). It judges error rates, never speed.
	Check func(s *report.Scenario) error
	// Fault, when set, is done to the scenario's own processes while it is
	// measured; the report says how many requests failed and how long
	// after the fault the last one did (the time to recover).
	Fault *Fault
}

// Fault is something that goes wrong during a scenario's measured window,
// on purpose (an upstream killed with SIGKILL).
type Fault struct {
	// Description says what happens, for the report.
	Description string
	// At is when it happens, as a share (0..1) of the measured window.
	At float64
	// Do makes it happen. It runs once, on its own goroutine, with the
	// scenario's Env (whose processes Setup started).
	Do func(env *Env) error
}

// ErrSkip marks a scenario that cannot run here (a peer is not installed).
var ErrSkip = errors.New("skipped")

// Skipf returns an error wrapping ErrSkip with a reason for the report.
func Skipf(format string, args ...any) error {
	return &skipError{msg: fmt.Sprintf(format, args...)}
}

type skipError struct{ msg string }

func (e *skipError) Error() string { return e.msg }
func (e *skipError) Unwrap() error { return ErrSkip }

// DefaultScenarios are the scenarios `weft bench` knows, in report order.
// Add a scenario here.
func DefaultScenarios() []Scenario {
	return []Scenario{
		Direct(),
		Weft(),
		WeftTracing(1),
		WeftTracing(100),
		WeftWasm(1),
		WeftWasm(4),
		WeftWasmTrusted(1),
		WeftWasmTrusted(4),
		WeftWasmWeftSDK(1),
		WeftWasmWeftSDK(4),
		WeftWasmWeftSDKNoop(1),
		WeftWasmWeftSDKNoop(4),
		WeftWasmWAT(1),
		WeftWasmWAT(4),
		WeftWasmC(1),
		WeftWasmC(4),
		WeftWasmHogIdle(),
		WeftWasmHog(),
		WeftPluginAuth(),
		WeftPluginAuthRS256(),
		WeftPluginFault(),
		WeftPluginRouting(),
		WeftPluginTelemetry(),
		DirectFlaky(),
		WeftRetryFlaky(),
		WeftKillEndpoint(),
		Weft2HopPlain(),
		WeftMTLS(),
		Nginx(),
		HAProxy(),
		Caddy(),
		WeftH2C(),
		WeftKillEndpointH2C(),
		GRPCDirect(),
		GRPCWeft(),
		GRPCNginx(),
		GRPCStreamDirect(),
		GRPCStreamWeft(),
	}
}

// QuickScenarios are the scenarios quick mode runs unless -scenarios is
// given: those marked Quick, in report order.
func QuickScenarios() []Scenario {
	var out []Scenario
	for _, s := range DefaultScenarios() {
		if s.Quick {
			out = append(out, s)
		}
	}
	return out
}

// Direct loads the upstream with no proxy: the baseline every other
// scenario is compared with.
func Direct() Scenario {
	return Scenario{
		Name:        "direct",
		Description: "client → upstream, no proxy (the baseline)",
		Quick:       true,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			addr, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			return "http://" + addr + "/", nil
		},
	}
}

// Weft proxies through `weft proxy` with no filter.
func Weft() Scenario {
	return Scenario{
		Name:        "weft",
		Description: "client → weft proxy (no filter) → upstream",
		Quick:       true,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			up, err := env.StartUpstream(ctx, env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			listen, _, err := env.startWeftFor(ctx, up, nil)
			if err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}
