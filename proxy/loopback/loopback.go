// Package loopback picks loopback addresses for servers that must be told
// their port before they bind it: a proxy started from a config file, a
// listener kept across a config swap (which keeps its socket only when the
// address is written the same).
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// lowest is the first port FreeAddr tries.
const lowest = 10000

// FreeAddr is a 127.0.0.1 address whose port was free a moment ago. The
// port is taken below the kernel's ephemeral range: a port from
// 127.0.0.1:0 is in that range, where any outgoing connection on the
// machine, or another process's own bind to port 0, may take it before
// the server binds it ("address already in use", or a readiness probe
// answered by somebody else's server); below the range only an explicit
// bind can. It falls back to a port from 127.0.0.1:0 when no low port was
// found in 200 tries.
func FreeAddr() (string, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &low)
	}
	for i := 0; i < 200 && low > lowest; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lowest+rand.IntN(low-lowest)))
		if err == nil {
			return closed(ln)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	return closed(ln)
}

func closed(ln net.Listener) (string, error) {
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	return addr, nil
}
