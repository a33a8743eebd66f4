package bench

import (
	"os"
	"path/filepath"
	"strings"
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

// The tcp scenarios run only when named: -scenarios tcp selects them with
// direct and weft to compare against; neither the full nor the quick run
// includes them.
func TestTCPScenariosOnDemand(t *testing.T) {
	got, err := selectScenarios("tcp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "direct,weft,weft-tcp,weft-tcp-wasm-1,weft-tcp-wasm-4" {
		t.Fatalf("selected %v", names)
	}
	for _, s := range append(DefaultScenarios(), QuickScenarios()...) {
		if strings.HasPrefix(s.Name, "weft-tcp") {
			t.Errorf("%s runs without being named", s.Name)
		}
	}
}
