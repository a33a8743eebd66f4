package tcpproxy_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/internal/guestbuild"
)

const benchChunk = 64 << 10

// BenchmarkTunnelThroughput streams 64 KiB chunks into an echo while
// reading them back, and reports MB/s (bytes each way) in one run for:
// straight to the echo, through one plaintext tcp listener, and through
// the sidecar pair (plaintext in, mTLS between the sidecars).
func BenchmarkTunnelThroughput(b *testing.B) {
	m := startTunnel(b, "30s", "1024")
	plain := startProxy(b, nil, `
listeners:
- name: tcp
  address: 127.0.0.1:0
  protocol: tcp
  tcp: {cluster: app}
clusters:
- name: app
  endpoints: [{address: "{{app}}"}]
`, map[string]string{"app": m.echo.addr()})
	for _, tc := range []struct{ name, addr string }{
		{"direct", m.echo.addr()},
		{"one-sidecar-plain", plain.ListenerAddr("tcp").String()},
		{"sidecar-pair-mtls", m.aAddr},
	} {
		b.Run(tc.name, func(b *testing.B) { streamEcho(b, tc.addr) })
	}
}

func streamEcho(b *testing.B, addr string) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out, in := make([]byte, benchChunk), make([]byte, benchChunk)
	// Warm up (TLS handshakes, buffers) before measuring.
	if _, err := c.Write(out); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, in); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	werr := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < b.N && err == nil; i++ {
			_, err = c.Write(out)
		}
		werr <- err
	}()
	for i := 0; i < b.N; i++ {
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
}

// TestPlainSpliceAllocatesNothing: once a plaintext connection is
// forwarding, moving bytes allocates nothing anywhere in the process (the
// proxy's splice, the metrics, the echo).
func TestPlainSpliceAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	echo := startEcho(t)
	p := startProxy(t, nil, `
listeners:
- name: tcp
  address: 127.0.0.1:0
  protocol: tcp
  tcp: {cluster: app}
clusters:
- name: app
  endpoints: [{address: "{{app}}"}]
`, map[string]string{"app": echo.addr()})
	c := dial(t, p.ListenerAddr("tcp").String(), nil)
	out, in := make([]byte, 16<<10), make([]byte, 16<<10)
	step := func() {
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if n := testing.AllocsPerRun(300, step); n != 0 {
		t.Fatalf("%v allocations per 16 KiB round trip, want 0", n)
	}
}

// BenchmarkNetworkFilterEcho sends 64 bytes and reads them back, one
// exchange at a time on one connection, through: the echo itself, a
// plaintext tcp listener, and the same listener with 1 and 4 no-op Wasm
// network filters (guest gosdk/tcpnoop, one VM each). An op is one
// exchange: a downstream and an upstream data callback per filter.
// cpu-ns/op is the whole process's CPU per exchange.
func BenchmarkNetworkFilterEcho(b *testing.B) {
	echo := startEcho(b)
	mod := filepath.Join(b.TempDir(), "tcpnoop.wasm")
	if err := os.WriteFile(mod, guestbuild.GoSDK(b, "tcpnoop"), 0o644); err != nil {
		b.Fatal(err)
	}
	listener := func(filters int) string {
		y := "listeners:\n- name: tcp\n  address: 127.0.0.1:0\n  protocol: tcp\n  tcp: {cluster: app}\n"
		if filters == 0 {
			return y + "clusters:\n- name: app\n  endpoints: [{address: \"{{app}}\"}]\n"
		}
		y += "  filters: ["
		for i := range filters {
			if i > 0 {
				y += ", "
			}
			y += fmt.Sprintf("n%d", i)
		}
		y += "]\nclusters:\n- name: app\n  endpoints: [{address: \"{{app}}\"}]\nfilters:\n"
		for i := range filters {
			y += fmt.Sprintf("- name: n%d\n  module: {path: %q}\n  pool_size: 1\n", i, mod)
		}
		return y
	}
	cases := []struct{ name, addr string }{{"direct", echo.addr()}}
	for _, n := range []int{0, 1, 4} {
		p := startProxy(b, nil, listener(n), map[string]string{"app": echo.addr()})
		cases = append(cases, struct{ name, addr string }{fmt.Sprintf("tcp-filters-%d", n), p.ListenerAddr("tcp").String()})
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c := dial(b, tc.addr, nil)
			defer c.Close()
			out, in := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				if _, err := c.Write(out); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, in); err != nil {
					b.Fatal(err)
				}
			}
			// The client, the echo and the proxy share this process: the
			// difference between cases is the proxy's path.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
