package tcpproxy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// A Wasm network filter on a strict mTLS tcp listener runs on the
// decrypted bytes: sidecar A tunnels to sidecar B over mTLS, B's filter
// upper-cases what comes from A's client and rewrites PING to PONG on the
// way back (guest gosdk/network).
func TestNetworkFilterOnMTLSListener(t *testing.T) {
	mod := filepath.Join(t.TempDir(), "network.wasm")
	if err := os.WriteFile(mod, guestbuild.GoSDK(t, "network"), 0o644); err != nil {
		t.Fatal(err)
	}
	filtered := strings.Replace(sidecarB, "  tcp: {cluster: app, idle_timeout: {{idle}}}\n",
		"  tcp: {cluster: app, idle_timeout: {{idle}}}\n  filters: [net]\n", 1) +
		"filters:\n- name: net\n  module: {path: \"" + mod + "\"}\n  pool_size: 1\n"
	if filtered == sidecarB {
		t.Fatal("sidecarB's tcp line moved: update this test")
	}
	c := newCA(t)
	echo := startEcho(t)
	b := startProxy(t, meshIdentity(t, c, ordersID), filtered, map[string]string{
		"addr": testserver.FreeAddr(t), "log": filepath.Join(t.TempDir(), "access.log"), "app": echo.addr(), "idle": "30s"})
	a := startProxy(t, meshIdentity(t, c, webID), sidecarA, map[string]string{"b": b.ListenerAddr("tcp-in").String(), "maxconns": "100"})
	conn := dial(t, a.ListenerAddr("tcp-out").String(), nil)
	defer conn.Close()
	if got, err := roundTrip(conn, "ping over mtls\n"); err != nil || got != "PONG OVER MTLS\n" {
		t.Fatalf("round trip through the filter: %q %v", got, err)
	}
}
