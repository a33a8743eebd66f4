package client_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
)

// TestFailoverBetweenReplicas runs two control plane replicas over the same
// applied state (the second started on the first one's data directory, so
// both hold the same resources, CA and snapshot versions) and a real
// sidecar given both (--control A,B). Killing the replica it watches moves
// it to the other at once — with a backoff far longer than the test, so
// only an immediate failover passes — and it keeps serving throughout,
// also once no replica answers.
func TestFailoverBetweenReplicas(t *testing.T) {
	u1, u2 := meshtest.StartUpstream(t, "u1"), meshtest.StartUpstream(t, "u2")
	data := t.TempDir()
	a := startControl(t, server.Options{DataDir: data})
	meshOn := func(addr string) string {
		return `kind: Service
name: orders
spec:
  endpoints: [{address: "` + addr + `"}]
---
kind: Sidecar
name: s1
spec:
  outbound: "127.0.0.1:0"
  admin: "off"
`
	}
	apply(t, a, meshOn(u1.Addr))
	b := startControl(t, server.Options{DataDir: data})
	if a.Store().Node("s1").Version != b.Store().Node("s1").Version {
		t.Fatalf("replicas disagree on s1's version: %s vs %s", a.Store().Node("s1").Version, b.Store().Node("s1").Version)
	}

	both := a.URL() + "," + b.URL()
	id := meshtest.JoinWith(t, both, meshtest.Roots(t, a), "s1", mintToken(t, a, "s1"))
	select {
	case <-id.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("s1 got no certificate")
	}
	sc := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: both, Identity: id, Roots: meshtest.Roots(t, a),
		MinBackoff: time.Hour, MaxBackoff: time.Hour})
	meshtest.Eventually(t, "s1 to ACK on replica A", func() bool {
		st := nodeStatus(t, a, "s1")
		return st.InSync && st.Watching
	})
	version := nodeStatus(t, a, "s1").Applied

	// Requests flow through the sidecar for the whole test.
	var sent, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, body, _, err := sc.Get("orders", "/")
			sent.Add(1)
			if err != nil || code != 200 || (body != "u1" && body != "u2") {
				failed.Add(1)
				lastErr.Store(meshtest.Sprintf("%d %q %v", code, body, err))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	killed := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, "s1 to watch replica B", func() bool {
		st := nodeStatus(t, b, "s1")
		return st.Watching && st.Applied == version
	})
	t.Logf("failover: replica B saw s1's watch %v after A was killed", time.Since(killed).Round(time.Millisecond))

	// The watch is on B: a change written through B reaches the sidecar.
	apply(t, b, meshOn(u2.Addr))
	meshtest.Eventually(t, "the change through B to be applied", func() bool {
		code, body, _, _ := sc.Get("orders", "/")
		return code == 200 && body == "u2"
	})

	// No replica answers: the config in force keeps serving.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	before := sent.Load()
	meshtest.Eventually(t, "requests with no control plane", func() bool { return sent.Load() > before+50 })
	if code, body, _, err := sc.Get("orders", "/"); err != nil || code != 200 || body != "u2" {
		t.Fatalf("with no replica up: %d %q %v", code, body, err)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the failover; last: %v", n, sent.Load(), lastErr.Load())
	}
	t.Logf("%d requests, 0 failed", sent.Load())
}

// TestFailoverAcrossTheAddressesOfOneName gives the sidecar one URL whose
// host name resolves to two addresses, 127.0.0.1 and ::1, each a control
// plane replica on the same port over the same state: killing the one it
// watches moves it to the other, and TLS verifies the name throughout.
func TestFailoverAcrossTheAddressesOfOneName(t *testing.T) {
	const name = "control.mesh.test"
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	data := t.TempDir()
	a := startControl(t, server.Options{DataDir: data, TLSHosts: []string{name}})
	apply(t, a, meshFor("127.0.0.1:0"))
	port := a.Addr().(*net.TCPAddr).Port
	b := startControl(t, server.Options{DataDir: data, TLSHosts: []string{name}, Addr: net.JoinHostPort("::1", strconv.Itoa(port))})

	m := join(t, a, "s1")
	select {
	case <-m.id.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("s1 got no certificate")
	}
	var lookups atomic.Int32
	startSidecar(t, m, client.Options{URL: "https://" + net.JoinHostPort(name, strconv.Itoa(port)), NodeID: "s1",
		LookupHost: func(_ context.Context, host string) ([]string, error) {
			lookups.Add(1)
			if host != name {
				return nil, fmt.Errorf("unexpected lookup of %q", host)
			}
			return []string{"127.0.0.1", "::1"}, nil
		}})
	meshtest.Eventually(t, "s1 to watch the first address", func() bool {
		st := nodeStatus(t, a, "s1")
		return st.InSync && st.Watching
	})
	version := nodeStatus(t, a, "s1").Applied
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, "s1 to watch the second address", func() bool {
		st := nodeStatus(t, b, "s1")
		return st.Watching && st.Applied == version
	})
	if lookups.Load() == 0 {
		t.Fatal("the name was never looked up")
	}
}
