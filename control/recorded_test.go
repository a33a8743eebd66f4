package control_test

import (
	"fmt"
	"testing"

	"github.com/weftmesh/weft/control/internal/meshtest"
)

// recordedRequests is what the sidecars' own weft_requests_total adds up
// to over 2xx answers: the requests an upstream answered (the test
// upstreams always answer 200), not the sidecar's own replies.
func recordedRequests(t *testing.T, scs ...*meshtest.Sidecar) int64 {
	t.Helper()
	var n float64
	for _, s := range scs {
		fams, err := s.Proxy.Metrics().Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != "weft_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "code_class" && l.GetValue() == "2xx" {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return int64(n)
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
