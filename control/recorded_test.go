package control_test

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/control/internal/meshtest"
)

// counterSum adds up the series of one counter family in a sidecar's
// metrics for which keep (given the series' labels) is true.
func counterSum(t *testing.T, s *meshtest.Sidecar, name string, keep func(labels map[string]string) bool) int64 {
	t.Helper()
	fams, err := s.Proxy.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if keep(labels) {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int64(n)
}

// configsApplied is how many configs a sidecar has applied or rejected.
func configsApplied(t *testing.T, s *meshtest.Sidecar) int64 {
	t.Helper()
	return counterSum(t, s, "weft_config_reloads_total", func(map[string]string) bool { return true })
}

// recordedRequests is what the sidecars' own weft_requests_total adds up
// to over 2xx answers: the requests an upstream answered (the test
// upstreams always answer 200), not the sidecar's own replies.
func recordedRequests(t *testing.T, scs ...*meshtest.Sidecar) int64 {
	t.Helper()
	var n int64
	for _, s := range scs {
		n += counterSum(t, s, "weft_requests_total", func(l map[string]string) bool { return l["code_class"] == "2xx" })
	}
	return n
}

// waitRecorded waits until the sidecars' metrics count at least n
// upstream-answered requests. A sidecar records a request when it finishes, which for a
// streamed answer is after the client has read the last byte; a scrape
// right after the client's last request may otherwise miss it.
func waitRecorded(t *testing.T, n int64, scs ...*meshtest.Sidecar) {
	t.Helper()
	meshtest.Eventually(t, fmt.Sprintf("the sidecars to record %d requests", n), func() bool {
		return recordedRequests(t, scs...) >= n
	})
}
