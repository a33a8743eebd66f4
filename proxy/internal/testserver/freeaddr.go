package testserver

import (
	"testing"

	"github.com/weftmesh/weft/proxy/loopback"
)

// FreeAddr is a loopback address whose port was free a moment ago, for a
// config that must name its listener's port before the proxy binds it (a
// config swap keeps a socket only when the address is written the same).
// The port is below the kernel's ephemeral range (loopback.FreeAddr).
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// RefusedAddr is a loopback address that refuses connections for the rest
// of the test (loopback.RefusedAddr): unlike a closed 127.0.0.1:0
// listener's, its port cannot go to another server meanwhile.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	addr, release, err := loopback.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return addr
}
