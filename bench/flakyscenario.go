package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/weftmesh/weft/bench/report"
	"github.com/weftmesh/weft/bench/upstream"
	"github.com/weftmesh/weft/proxy/config"
)

// FlakyFailRate is the share of requests the flaky upstream answers 503
// (every tenth, spread evenly).
const FlakyFailRate = 0.1

// RetryAttempts is weft-retry-flaky's retries after the first try: with
// one request in ten failing, a client still sees about 0.1^(1+3) = 0.01%
// fail.
const RetryAttempts = 3

// RetryBackoff is weft-retry-flaky's first backoff (25 ms by default): kept
// short so that the scenario measures what the proxy spends on a retry
// more than how long it sleeps.
const RetryBackoff = time.Millisecond

// DirectFlaky loads an upstream that answers FlakyFailRate of its requests
// with 503, with no proxy: the error rate a client sees without retries,
// and the baseline of weft-retry-flaky.
func DirectFlaky() Scenario {
	return Scenario{
		Name:        "direct-flaky",
		Description: fmt.Sprintf("client → upstream failing %g%% of requests (503), no proxy", FlakyFailRate*100),
		Quick:       true,
		Check:       checkFailShare(FlakyFailRate/2, FlakyFailRate*1.5),
		Setup: func(ctx context.Context, env *Env) (string, error) {
			addr, err := env.StartUpstream(ctx, flakyUpstream(env))
			if err != nil {
				return "", err
			}
			return "http://" + addr + "/", nil
		},
	}
}

// WeftRetryFlaky proxies through weft to the flaky upstream with a route
// retry policy (RetryAttempts retries on 502/503/504, RetryBackoff first
// backoff, the default budget): the client should see almost no error,
// and the report shows what the retries cost against direct-flaky.
func WeftRetryFlaky() Scenario {
	return Scenario{
		Name: "weft-retry-flaky",
		Description: fmt.Sprintf("client → weft proxy retrying 503s (%d attempts, %s backoff) → upstream failing %g%% of requests",
			RetryAttempts, RetryBackoff, FlakyFailRate*100),
		Compare: "direct-flaky",
		Quick:   true,
		// Without retries a client would see FlakyFailRate fail; allow a
		// tenth of it (a hundred times what the retries should leave).
		Check: checkFailShare(0, FlakyFailRate/10),
		Setup: func(ctx context.Context, env *Env) (string, error) {
			up, err := env.StartUpstream(ctx, flakyUpstream(env))
			if err != nil {
				return "", err
			}
			listen, _, err := env.startWeftFor(ctx, up, func(cfg *config.Config) {
				cfg.Listeners[0].VirtualHosts[0].Routes[0].Route.Retry = &config.RetryPolicy{
					Attempts:    RetryAttempts,
					On:          []string{"gateway-error"},
					BackoffBase: config.Duration(RetryBackoff),
				}
			})
			if err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}

// flakyUpstream is the run's upstream failing FlakyFailRate of requests.
func flakyUpstream(env *Env) upstream.Config {
	cfg := env.UpstreamConfig()
	cfg.FailRate = FlakyFailRate
	return cfg
}

// checkFailShare is a quick-mode check for a scenario whose failures are
// the point: answers came, no request went unanswered, and the share of
// non-2xx responses is within [lo, hi].
func checkFailShare(lo, hi float64) func(s *report.Scenario) error {
	return func(s *report.Scenario) error {
		if s.Requests == 0 {
			return fmt.Errorf("scenario %q: no request was answered", s.Name)
		}
		if n := s.Errors.Total(); n > 0 {
			return fmt.Errorf("scenario %q: %d requests got no response (%+v)", s.Name, n, s.Errors)
		}
		if r := s.ErrorRate(); r < lo || r > hi {
			return fmt.Errorf("scenario %q: %.2f%% of responses were not 2xx (%+v), want %.2f%%..%.2f%%",
				s.Name, 100*r, s.Statuses, 100*lo, 100*hi)
		}
		return nil
	}
}
