package tcpproxy_test

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/tcpproxy"
)

func TestCompileRefusesWhatConnectionsCannotHave(t *testing.T) {
	cl, err := cluster.New(config.Cluster{Name: "app", Endpoints: []config.Endpoint{{Address: "127.0.0.1:1"}}}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ok := config.Listener{Name: "l", Protocol: "tcp", TCP: &config.TCPProxy{Cluster: "app"}}
	r, err := tcpproxy.Compile(&ok, tcpproxy.RouteOptions{Cluster: cl})
	if err != nil || r.Cluster() != cl || r.Listener() != "l" {
		t.Fatalf("Compile: %v", err)
	}
	for name, tc := range map[string]struct {
		l    config.Listener
		want string
	}{
		"no tcp":        {config.Listener{Name: "l"}, `listener "l": tcp: no tcp block`},
		"other cluster": {config.Listener{Name: "l", TCP: &config.TCPProxy{Cluster: "db"}}, `cluster "db" is not compiled`},
		"http authz": {config.Listener{Name: "l", TCP: &config.TCPProxy{Cluster: "app"},
			Authz: &config.Authz{Rules: []config.AuthzRule{{Name: "r", Action: "deny", Methods: []string{"GET"}}}}}, `authz rules[0] "r": request conditions`},
	} {
		if _, err := tcpproxy.Compile(&tc.l, tcpproxy.RouteOptions{Cluster: cl}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
