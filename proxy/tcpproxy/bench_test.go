package tcpproxy_test

import (
	"io"
	"net"
	"testing"
	"time"
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
