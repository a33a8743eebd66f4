package bench

import (
	"os"
	"path/filepath"
	"testing"
)

// The tcp scenarios forward HTTP/1.1 through a tcp listener, with and
// without no-op network filters, and the answers arrive whole.
func TestTCPScenarios(t *testing.T) {
	for _, sc := range []Scenario{WeftTCP(), WeftTCPWasm(1)} {
		t.Run(sc.Name, func(t *testing.T) {
			s := startScenario(t, sc)
			if got := s.proxyConfig("weft").Listeners[0].Protocol; got != "tcp" {
				t.Fatalf("listener protocol %q, want tcp", got)
			}
			t.Cleanup(func() {
				if t.Failed() {
					b, _ := os.ReadFile(filepath.Join(s.env.Dir, "weft.log"))
					t.Logf("weft.log:\n%s", b)
				}
			})
			codes, body := s.get(s.url, 20)
			s.wantOK(codes, body, 20)
		})
	}
}
