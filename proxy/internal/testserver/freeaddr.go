package testserver

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreeAddr is a loopback address whose port was free a moment ago, for a
// config that must name its listener's port before the proxy binds it (a
// config swap keeps a socket only when the address is written the same).
// The port is taken below the kernel's ephemeral range: a port from
// 127.0.0.1:0 is in that range, where any outgoing connection on the
// machine (another test package's) may take it before the proxy binds it
// ("address already in use" in CI); below the range only an explicit bind
// can.
func FreeAddr(t testing.TB) string {
	t.Helper()
	const first = 10000
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &low)
	}
	for i := 0; i < 200 && low > first; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+rand.IntN(low-first)))
		if err == nil {
			defer ln.Close()
			return ln.Addr().String()
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
