package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/bench/report"
	"github.com/weftmesh/weft/proxy/config"
)

// KillMaxFailShare is the most of weft-kill-endpoint's requests that may
// fail: one of two endpoints dying must cost healthy traffic next to
// nothing with the default config (issue 18 §3).
const KillMaxFailShare = 0.001

// killInFlight bounds the failures a short window may show however large
// their share: the kill resets at most one request in flight per client
// connection (the pinned scenarios use 16).
const killInFlight = 16

// checkKill passes a run where at most KillMaxFailShare of the requests
// failed, or, in a window too short for a share to mean anything (quick
// mode), no more than the requests in flight at the kill.
func checkKill(s *report.Scenario) error {
	if s.Requests == 0 {
		return fmt.Errorf("scenario %q: no request was answered", s.Name)
	}
	if n := s.Errors.Total(); n > 0 {
		return fmt.Errorf("scenario %q: %d requests got no response (%+v)", s.Name, n, s.Errors)
	}
	if f := s.Failed(); float64(f) > max(KillMaxFailShare*float64(s.Requests), killInFlight) {
		return fmt.Errorf("scenario %q: %d of %d requests failed (%.2f%%), want at most %.2f%% (or the %d in flight at the kill)",
			s.Name, f, s.Requests, 100*float64(f)/float64(s.Requests), 100*KillMaxFailShare, killInFlight)
	}
	return nil
}

// KillAt is when weft-kill-endpoint kills its upstream, as a share of the
// measured window: early, so the rest of the window shows the recovery.
const KillAt = 0.3

// WeftKillEndpoint loads weft in front of two upstream processes with the
// config a mesh user writes (no retry policy, no health check, no outlier
// detection: the defaults decide) and kills one upstream with SIGKILL
// during the measured window. The report gives the failed requests and the
// time from the kill to the last failure; quick mode checks that at most
// KillMaxFailShare of the requests failed.
func WeftKillEndpoint() Scenario {
	return killEndpoint("weft-kill-endpoint", "", "weft", true)
}

// WeftKillEndpointH2C is WeftKillEndpoint loaded by an h2c client: the
// requests take weft's HTTP/2 stream path, whose retries are the same.
func WeftKillEndpointH2C() Scenario {
	return killEndpoint("weft-kill-endpoint-h2c", loadgen.H2C, "weft-h2c", false)
}

func killEndpoint(name, protocol, compare string, quick bool) Scenario {
	var victim *proc.Process
	client := "client"
	if protocol == loadgen.H2C {
		client = "h2c client"
	}
	return Scenario{
		Name:        name,
		Description: client + " → weft (default config) → two upstream processes; one is killed -9 during the window",
		Protocol:    protocol,
		Compare:     compare,
		Quick:       quick,
		Check:       checkKill,
		Fault: &Fault{
			Description: "kill -9 one of the two upstreams",
			At:          KillAt,
			Do: func(*Env) error {
				if victim == nil {
					return errors.New("no upstream to kill")
				}
				return victim.Kill()
			},
		},
		Setup: func(ctx context.Context, env *Env) (string, error) {
			a, addrA, err := env.StartUpstreamProcess(ctx, "upstream-a", env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			_, addrB, err := env.StartUpstreamProcess(ctx, "upstream-b", env.UpstreamConfig())
			if err != nil {
				return "", err
			}
			victim = a
			listen, _, err := env.startWeftFor(ctx, addrA, func(cfg *config.Config) {
				cfg.Clusters[0].Endpoints = append(cfg.Clusters[0].Endpoints, config.Endpoint{Address: addrB})
			})
			if err != nil {
				return "", err
			}
			return "http://" + listen + "/", nil
		},
	}
}
