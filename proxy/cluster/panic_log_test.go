package cluster

import (
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/proxy/config"
)

// Entering and leaving panic mode is logged once each, at the change: not
// when the endpoints change without crossing the threshold.
func TestPanicModeLoggedAtChanges(t *testing.T) {
	a, b := newCheckedServer(t), newCheckedServer(t)
	core, logs := observer.New(zap.InfoLevel)
	c := start(t, config.Cluster{Name: "p", Endpoints: static(a.addr, b.addr), HealthCheck: fastChecks()}, Options{Logger: zap.New(core)})
	panicLogs := func() []string {
		var out []string
		for _, e := range logs.All() {
			if strings.HasPrefix(e.Message, "panic mode") {
				out = append(out, e.Message)
			}
		}
		return out
	}
	healthy := func(s *checkedServer) bool { return endpointByAddr(c, s.addr).usable() }
	enter, over := "panic mode: too few usable endpoints, balancing across all", "panic mode over"

	a.code.Store(500) // one of two usable: 50%, not under the threshold
	eventually(t, "a unhealthy", func() bool { return !healthy(a) })
	if got := panicLogs(); len(got) != 0 || c.Status().Panic {
		t.Fatalf("half the endpoints usable: panic %v, logged %q", c.Status().Panic, got)
	}
	b.code.Store(500)
	eventually(t, "panic", func() bool { return c.Status().Panic })
	if got := panicLogs(); !slices.Equal(got, []string{enter}) {
		t.Fatalf("entering panic mode logged %q", got)
	}
	a.code.Store(200)
	eventually(t, "panic over", func() bool { return healthy(a) && !c.Status().Panic })
	if got := panicLogs(); !slices.Equal(got, []string{enter, over}) {
		t.Fatalf("leaving panic mode logged %q", got)
	}
}
