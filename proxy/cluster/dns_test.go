package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/loopback"
)

// dnsServer is a tiny authoritative DNS server on 127.0.0.1 (UDP) that
// answers every A query with its current IPs (AAAA: no records).
type dnsServer struct {
	conn net.PacketConn
	mu   sync.Mutex
	ips  []net.IP
	fail bool // answer SERVFAIL
}

func newDNSServer(t *testing.T) *dnsServer {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: pc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := s.answer(buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	return s
}

func (s *dnsServer) set(fail bool, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
	s.ips = s.ips[:0]
	for _, ip := range ips {
		s.ips = append(s.ips, net.ParseIP(ip).To4())
	}
}

// resolver sends every query to s.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// answer builds the response to one query (RFC 1035 section 4.1).
func (s *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	question := q[12 : i+5]
	s.mu.Lock()
	defer s.mu.Unlock()
	flags := uint16(0x8180) // response, recursion desired and available
	var answers []net.IP
	switch {
	case s.fail:
		flags |= 2 // SERVFAIL
	case qtype == 1: // A
		answers = s.ips
	}
	out := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(q))
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(answers)))
	out = append(out, 0, 0, 0, 0)
	out = append(out, question...)
	for _, ip := range answers {
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4) // name pointer, A, IN, TTL 1, length 4
		out = append(out, ip...)
	}
	return out
}

func TestDNSRefresh(t *testing.T) {
	// Real upstreams on 127.0.0.2-4 with one port, as a DNS name would give.
	lns := listenShared(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	port := lns[0].Addr().(*net.TCPAddr).Port
	for _, ln := range lns {
		addr := ln.Addr().String()
		serveOn(t, ln, identity(&addr))
	}
	dns := newDNSServer(t)
	dns.set(false, "127.0.0.3", "127.0.0.2")
	c := start(t, config.Cluster{Name: "dns",
		DNS:         &config.DNS{Name: "api.weft.test.", Port: port, Refresh: config.Duration(20 * time.Millisecond)},
		HealthCheck: fastChecks(),
	}, Options{Resolver: dns.resolver()})

	addrs := func() []string {
		var a []string
		for _, e := range c.Status().Endpoints {
			a = append(a, e.Address)
		}
		return a
	}
	p := strconv.Itoa(port)
	if got := addrs(); !slices.Equal(got, []string{"127.0.0.2:" + p, "127.0.0.3:" + p}) {
		t.Fatalf("after Start: %v", got)
	}
	for range 4 {
		e := c.Pick(0, false, nil)
		if st, err := get(e, "/"); err != nil || st != 200 {
			t.Fatalf("request to %s: %d %v", e.Address(), st, err)
		}
	}
	stay := endpointByAddr(c, "127.0.0.2:"+p)
	stay.Report(503, nil)

	dns.set(false, "127.0.0.2", "127.0.0.4")
	eventually(t, "new answer installed", func() bool {
		return slices.Equal(addrs(), []string{"127.0.0.2:" + p, "127.0.0.4:" + p})
	})
	if endpointByAddr(c, "127.0.0.2:"+p) != stay || stay.failures.Load() != 1 || stay.total.Load() != 2 {
		t.Fatal("the endpoint that stayed lost its state")
	}
	added := endpointByAddr(c, "127.0.0.4:"+p)
	eventually(t, "the added endpoint is health checked and used", func() bool {
		e := c.Pick(0, false, stay)
		st, err := get(e, "/")
		return e == added && err == nil && st == 200
	})

	failures := c.Stats().DNSFailures.Load()
	dns.set(true)
	eventually(t, "failed refreshes counted", func() bool { return c.Stats().DNSFailures.Load() >= failures+2 })
	dns.set(false) // empty answer
	eventually(t, "empty answers counted", func() bool { return c.Stats().DNSFailures.Load() >= failures+4 })
	if got := addrs(); !slices.Equal(got, []string{"127.0.0.2:" + p, "127.0.0.4:" + p}) {
		t.Fatalf("a failed refresh changed the endpoints: %v", got)
	}
}

// listenShared listens on one port on each of ips. The port is held
// meanwhile: bound on 127.0.0.1 without listening (loopback.RefusedAddr),
// so no listener on port 0 nor outgoing connection takes it between its
// choice and the listens. (This test listened on 127.0.0.1:0, closed it
// and listened again on the port: whoever came in between took it.) It
// skips the test when the host cannot listen on those addresses.
func listenShared(t *testing.T, ips ...string) []net.Listener {
	for range 5 {
		held, release, err := loopback.RefusedAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(held)
		var lns []net.Listener
		for _, ip := range ips {
			l, err := net.Listen("tcp4", net.JoinHostPort(ip, port))
			if err != nil {
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Skipf("cannot listen on %s: %v", ip, err)
				}
				break
			}
			lns = append(lns, l)
		}
		release()
		if len(lns) == len(ips) {
			return lns
		}
		for _, l := range lns {
			_ = l.Close()
		}
	}
	t.Skip("no port free on all of " + strings.Join(ips, ", ") + " in 5 tries")
	return nil
}

// serveOn serves h on ln until the test ends.
func serveOn(t *testing.T, ln net.Listener, h fasthttp.RequestHandler) {
	s := &fasthttp.Server{Handler: h, CloseOnShutdown: true, MaxIdleWorkerDuration: 50 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		_ = s.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		_ = ln.Close()
		<-done
	})
}

func TestDNSLocalhost(t *testing.T) {
	var self string
	self = serve(t, identity(&self))
	_, port, _ := net.SplitHostPort(self)
	p, _ := strconv.Atoi(port)
	c := start(t, config.Cluster{Name: "local", DNS: &config.DNS{Name: "localhost", Port: p}}, Options{})
	e := endpointByAddr(c, "127.0.0.1:"+port)
	if e == nil {
		t.Fatalf("localhost did not resolve to 127.0.0.1: %+v", c.Status().Endpoints)
	}
	for _, st := range c.Status().Endpoints {
		if ip := net.ParseIP(mustHost(t, st.Address)); ip == nil || !ip.IsLoopback() {
			t.Fatalf("localhost resolved to %s", st.Address)
		}
	}
	if st, err := get(e, "/"); err != nil || st != 200 {
		t.Fatalf("request: %d %v", st, err)
	}
}

func mustHost(t *testing.T, addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDNSCloseDuringSlowLookup(t *testing.T) {
	// A resolver that never answers: Close must not wait for it.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	c, err := New(config.Cluster{Name: "slow", DNS: &config.DNS{Name: "x.weft.test.", Port: 80, Refresh: config.Duration(time.Hour)}},
		Options{Resolver: r, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		c.Start()
		close(started)
	}()
	// Close only once the lookup is under way (its query reached the
	// resolver): closed first, the cluster never looks up and the test
	// proves nothing.
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := pc.ReadFrom(make([]byte, 512)); err != nil {
		t.Fatalf("no DNS query reached the resolver: %v", err)
	}
	c.Close()
	<-started
	if e := c.Pick(0, false, nil); e != nil {
		t.Fatalf("picked %s with no answer", e.Address())
	}
}

// An answer that replaces every address of the last one (the same number
// of addresses, none in common) is installed: the new set is not taken
// for the old one position by position.
func TestDNSAnswerReplacedWhole(t *testing.T) {
	dns := newDNSServer(t)
	dns.set(false, "127.0.0.2")
	c := start(t, config.Cluster{Name: "dns",
		DNS: &config.DNS{Name: "api.weft.test.", Port: 8080, Refresh: config.Duration(20 * time.Millisecond)},
	}, Options{Resolver: dns.resolver()})
	addrs := func() []string {
		var a []string
		for _, e := range c.Status().Endpoints {
			a = append(a, e.Address)
		}
		return a
	}
	if got := addrs(); !slices.Equal(got, []string{"127.0.0.2:8080"}) {
		t.Fatalf("after Start: %v", got)
	}
	dns.set(false, "127.0.0.3")
	eventually(t, "the new address installed", func() bool { return slices.Equal(addrs(), []string{"127.0.0.3:8080"}) })
	dns.set(false, "127.0.0.4", "127.0.0.5")
	eventually(t, "two new addresses installed", func() bool {
		return slices.Equal(addrs(), []string{"127.0.0.4:8080", "127.0.0.5:8080"})
	})
	dns.set(false, "127.0.0.6", "127.0.0.7")
	eventually(t, "both replaced", func() bool {
		return slices.Equal(addrs(), []string{"127.0.0.6:8080", "127.0.0.7:8080"})
	})
}
