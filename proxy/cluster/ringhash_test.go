package cluster

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

func ringCluster(t testing.TB, n int) *Cluster {
	eps := make([]config.Endpoint, n)
	for i := range eps {
		eps[i] = config.Endpoint{Address: fmt.Sprintf("10.0.0.%d:8080", i+1)}
	}
	return start(t, config.Cluster{Name: "ring", LB: "ring_hash", Endpoints: eps, HashOn: &config.HashOn{Header: "x-user"}}, Options{})
}

func TestRingHashSameKeySameEndpoint(t *testing.T) {
	c := ringCluster(t, 5)
	other := ringCluster(t, 5) // another sidecar with the same config
	for i := range 1000 {
		k := hash64([]byte("user-" + strconv.Itoa(i)))
		e := c.Pick(k, true, nil)
		for range 3 {
			if again := c.Pick(k, true, nil); again != e {
				t.Fatalf("key %d: %s then %s", i, e.Address(), again.Address())
			}
		}
		if o := other.Pick(k, true, nil); o.Address() != e.Address() {
			t.Fatalf("key %d: sidecars disagree: %s vs %s", i, e.Address(), o.Address())
		}
	}
	checkShareN(t, c, 5)
}

// checkShareN checks keys spread over all n endpoints roughly evenly.
func checkShareN(t *testing.T, c *Cluster, n int) {
	t.Helper()
	got := map[string]int{}
	const keys = 20000
	for i := range keys {
		got[c.Pick(hash64([]byte(strconv.Itoa(i))), true, nil).Address()]++
	}
	for a, m := range got {
		if m < keys/n/2 || m > keys/n*2 {
			t.Errorf("%s holds %d of %d keys", a, m, keys)
		}
	}
	if len(got) != n {
		t.Errorf("keys on %d endpoints, want %d", len(got), n)
	}
}

func TestRingHashRemovalMovesAboutOneNth(t *testing.T) {
	const n = 10
	before := ringCluster(t, n)
	// The same endpoints without 10.0.0.4.
	var eps []config.Endpoint
	for i := range n {
		if i != 3 {
			eps = append(eps, config.Endpoint{Address: fmt.Sprintf("10.0.0.%d:8080", i+1)})
		}
	}
	after := start(t, config.Cluster{Name: "ring", LB: "ring_hash", Endpoints: eps, HashOn: &config.HashOn{Header: "x-user"}}, Options{})
	const keys = 20000
	moved := 0
	for i := range keys {
		k := hash64([]byte("k" + strconv.Itoa(i)))
		a, b := before.Pick(k, true, nil).Address(), after.Pick(k, true, nil).Address()
		if a != b {
			moved++
			if a != "10.0.0.4:8080" {
				t.Fatalf("key %d moved from %s, which stayed", i, a)
			}
		}
	}
	frac := float64(moved) / keys
	if frac < 0.5/n || frac > 2.0/n {
		t.Fatalf("%.3f of keys moved, want about %.3f", frac, 1.0/n)
	}
	t.Logf("removing 1 of %d endpoints moved %.2f%% of keys", n, 100*frac)
}

func TestRingHashSkipsUnusableKeepingOthers(t *testing.T) {
	c := ringCluster(t, 6)
	const keys = 5000
	owner := make([]*Endpoint, keys)
	for i := range owner {
		owner[i] = c.Pick(uint64(i)*0x9e3779b97f4a7c15, true, nil)
	}
	down := owner[0]
	down.ejected.Store(true)
	c.rebuild()
	for i := range owner {
		k := uint64(i) * 0x9e3779b97f4a7c15
		e := c.Pick(k, true, nil)
		if e == down {
			t.Fatal("picked the ejected endpoint")
		}
		if owner[i] != down && e != owner[i] {
			t.Fatalf("key %d moved from %s though it stayed usable", i, owner[i].Address())
		}
		// A retry avoids the endpoint that failed.
		if r := c.Pick(k, true, e); r == e {
			t.Fatal("retry picked the excluded endpoint")
		}
	}
}

// TestHashKeyThroughProxy runs a tiny proxy (a real fasthttp listener that
// hashes, picks and forwards with Endpoint.Do) in front of three real
// upstreams, and checks that each hash_on source pins a client.
func TestHashKeyThroughProxy(t *testing.T) {
	ups := make([]string, 3)
	for i := range ups {
		ups[i] = serve(t, identity(&ups[i]))
	}
	tests := []struct {
		name   string
		hashOn config.HashOn
		set    func(req *fasthttp.Request, i int)
		// localIP makes the client connect from 127.0.0.<i+1>.
		localIP bool
	}{
		{"header", config.HashOn{Header: "x-user"}, func(r *fasthttp.Request, i int) { r.Header.Set("X-User", "user-"+strconv.Itoa(i)) }, false},
		{"cookie", config.HashOn{Cookie: "session"}, func(r *fasthttp.Request, i int) { r.Header.SetCookie("session", "s"+strconv.Itoa(i)) }, false},
		{"source ip", config.HashOn{SourceIP: true}, func(*fasthttp.Request, int) {}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hashOn := tt.hashOn
			c := start(t, config.Cluster{Name: "h", LB: "ring_hash", Endpoints: static(ups...), HashOn: &hashOn}, Options{})
			var keyed, unkeyed int
			front := serve(t, func(ctx *fasthttp.RequestCtx) {
				key, ok := c.HashKey(&ctx.Request, ctx.RemoteAddr())
				if ok {
					keyed++
				} else {
					unkeyed++
				}
				e := c.Pick(key, ok, nil)
				if err := e.Do(&ctx.Request, &ctx.Response, time.Now().Add(5*time.Second)); err != nil {
					ctx.Error(err.Error(), fasthttp.StatusBadGateway)
				}
			})
			const clients = 12
			first := make([]string, clients)
			seen := map[string]bool{}
			for round := range 4 {
				for i := range clients {
					var local net.Addr
					if tt.localIP {
						local = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))}
					}
					client := &fasthttp.HostClient{Addr: front, Dial: func(addr string) (net.Conn, error) {
						d := net.Dialer{LocalAddr: local}
						return d.Dial("tcp4", addr)
					}}
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					req.SetRequestURI("http://" + front + "/")
					req.SetConnectionClose() // no idle pool, no cleaner goroutine
					tt.set(req, i)
					if err := client.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
						t.Fatalf("client %d: %d %v %s", i, resp.StatusCode(), err, resp.Body())
					}
					got := string(resp.Body())
					fasthttp.ReleaseRequest(req)
					fasthttp.ReleaseResponse(resp)
					if round == 0 {
						first[i] = got
						seen[got] = true
					} else if got != first[i] {
						t.Fatalf("client %d went to %s, then %s", i, first[i], got)
					}
				}
			}
			if len(seen) < 2 {
				t.Errorf("%d clients all landed on one upstream", clients)
			}
			if keyed != 4*clients || unkeyed != 0 {
				t.Errorf("keyed %d, unkeyed %d", keyed, unkeyed)
			}
			// Without the header/cookie there is no key.
			var req fasthttp.Request
			if _, ok := c.HashKey(&req, nil); ok {
				t.Error("HashKey found a key in an empty request")
			}
		})
	}
}

func TestHashKeyNotRingHash(t *testing.T) {
	c := start(t, config.Cluster{Name: "rr", Endpoints: static("127.0.0.1:1")}, Options{})
	var req fasthttp.Request
	req.Header.Set("X-User", "u")
	if _, ok := c.HashKey(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); ok {
		t.Fatal("HashKey gave a key for a round_robin cluster")
	}
}

func BenchmarkPickRingHash(b *testing.B) {
	c := ringCluster(b, 8)
	b.ReportAllocs()
	k := uint64(1)
	for b.Loop() {
		k = k*6364136223846793005 + 1442695040888963407
		if c.Pick(k, true, nil) == nil {
			b.Fatal("nil")
		}
	}
}

func BenchmarkHashKey(b *testing.B) {
	src := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5555}
	for _, h := range []config.HashOn{{Header: "x-user"}, {Cookie: "session"}, {SourceIP: true}} {
		c := start(b, config.Cluster{Name: "h", LB: "ring_hash", Endpoints: static("127.0.0.1:1"), HashOn: &h}, Options{})
		var req fasthttp.Request
		req.Header.Set("X-User", "user-123456")
		req.Header.Set("Cookie", "a=b; session=abcdef0123456789; c=d")
		b.Run(fmt.Sprintf("%+v", h), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := c.HashKey(&req, src); !ok {
					b.Fatal("no key")
				}
			}
		})
	}
}
