package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/weftmesh/weft/bench/grpcload"
	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/report"
)

// The gRPC and h2c scenarios run in quick mode (every call answered OK,
// nothing left running), weft's CPU is measured, and the protocol is in
// the report. Never a speed.
func TestGRPCAndH2CScenarios(t *testing.T) {
	weft := weftForTest(t)
	for _, pin := range []bool{false, true} {
		name := "in-process"
		if pin {
			name = "pinned"
			needTaskset(t)
		}
		t.Run(name, func(t *testing.T) {
			var log pidLog
			scenarios := []Scenario{GRPCDirect(), GRPCWeft(), GRPCStreamWeft(), WeftH2C(), GRPCNginx()}
			if pin {
				scenarios = scenarios[:3] // the subprocess load generator and gRPC upstream
			}
			opts := quickOptions(t, &log, scenarios...)
			opts.WeftBin = weft
			opts.Pin, opts.LoadCPUs, opts.ServerCPUs = pin, "0", "1"
			rep, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			protocols := map[string]string{"grpc-direct": grpcload.Unary, "grpc-weft": grpcload.Unary,
				"grpc-stream-weft": grpcload.Stream, "weft-h2c": loadgen.H2C, "grpc-nginx": grpcload.Unary}
			for _, s := range rep.Scenarios {
				if s.Status == report.StatusSkipped && s.Name == "grpc-nginx" {
					t.Logf("grpc-nginx skipped: %s", s.Reason)
					continue
				}
				if !s.OK() || s.Requests == 0 || s.Latency.Count != s.Requests || s.Protocol != protocols[s.Name] {
					t.Errorf("%s: %+v", s.Name, s)
				}
				if measured := s.Name != "grpc-direct"; measured != (s.CPU != nil) {
					t.Errorf("%s: CPU %+v", s.Name, s.CPU)
				}
				// Pinned, the generator and the upstream are processes of
				// their own: their CPU is reported beside the proxy's, and
				// a proxied unary row is set against direct's.
				if pin != (s.Client != nil && s.Upstream != nil) {
					t.Errorf("%s (pinned %v): client CPU %+v, upstream CPU %+v", s.Name, pin, s.Client, s.Upstream)
				} else if pin && (s.Client.Seconds <= 0 || s.Upstream.Seconds < 0) {
					// The generator's own count is exact; /proc counts the
					// upstream's in 10 ms ticks, which a quick run may not
					// fill.
					t.Errorf("%s: client %v s, upstream %v s of CPU: want > 0 and >= 0", s.Name, s.Client.Seconds, s.Upstream.Seconds)
				}
				if wantEnds := pin && s.Name == "grpc-weft"; wantEnds != (s.Endpoints != nil) {
					t.Errorf("%s (pinned %v): endpoint comparison %+v", s.Name, pin, s.Endpoints)
				}
			}
			if pin {
				names := map[string]bool{}
				for _, n := range log.pids {
					names[n] = true
				}
				if !names["grpc-upstream"] || !names["load"] {
					t.Errorf("subprocesses %v, want a grpc-upstream and a load generator", log.pids)
				}
			}
			log.assertGone(t)
		})
	}
}

// -scenarios takes the groups; the load subprocess gets the protocol.
func TestScenarioGroupsAndLoadFlags(t *testing.T) {
	got, err := selectScenarios("direct,grpc")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "direct,grpc-direct,grpc-weft,grpc-nginx,grpc-stream-direct,grpc-stream-weft" {
		t.Fatalf("selected %v", names)
	}
	flags := strings.Join(loadFlags(loadgen.Config{Protocol: grpcload.Stream, Conns: 1, MessageSize: 64}), " ")
	if !strings.Contains(flags, "-protocol grpc-stream -conns 1 -message-size 64") {
		t.Fatalf("flags %q", flags)
	}
}
