// Package etcdtest runs a real etcd cluster in-process for the control
// plane's tests: members started with go.etcd.io/etcd/server/v3/embed on
// loopback, with random ports and temporary data directories, which a test
// can stop and restart to lose and regain a quorum.
// Test-only: it must not be imported by non-test code.
package etcdtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/loopback"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one etcd member.
type Member struct {
	Name string
	Dir  string
	// ClientURL is where clients reach the member: a TCP relay that Stop
	// cuts, so clients see a crash (connections reset) at once.
	ClientURL string
	relay     *relay
	etcdURL   string
	peerURL   string
	initial   string
	etcd      *embed.Etcd
	fsync     bool
	tls       *TLSFiles
	closed    chan struct{} // closed when a stopped member has let go of its ports
}

// Options tune a test cluster.
type Options struct {
	// Fsync makes members sync their WAL as production etcd does (off by
	// default: tests lose nothing by skipping it and run faster).
	Fsync bool
	// TLS, when set, serves clients over TLS and requires their
	// certificates (etcd --client-cert-auth); Endpoints are then https.
	TLS *TLSFiles
}

// Start starts an n-member cluster and stops it when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, n, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *Cluster
		if c, err = start(t, n, o); err == nil {
			t.Cleanup(c.stopAll)
			return c
		}
		// A port picked free was taken by someone else before etcd bound it.
		t.Logf("etcd cluster start (attempt %d): %v", attempt+1, err)
	}
	t.Fatalf("etcd: %v", err)
	return nil
}

func start(t testing.TB, n int, o Options) (*Cluster, error) {
	c := &Cluster{t: t}
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{Name: fmt.Sprintf("m%d", i), Dir: t.TempDir(), etcdURL: "http://" + freeAddr(t), peerURL: "http://" + freeAddr(t)}
		r, err := newRelay(strings.TrimPrefix(m.etcdURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		m.relay, m.ClientURL = r, "http://"+r.addr()
		if o.TLS != nil {
			m.etcdURL = "https://" + strings.TrimPrefix(m.etcdURL, "http://")
			m.ClientURL = "https://" + r.addr()
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.peerURL)
	}
	errs := make(chan error, n)
	for _, m := range c.Members {
		m.initial = strings.Join(initial, ",")
		m.fsync, m.tls = o.Fsync, o.TLS
		go func() { errs <- m.start("new") }()
	}
	var firstErr error
	for range c.Members {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		c.stopAll()
		return nil, firstErr
	}
	return c, nil
}

// freeAddr is a loopback address free right now, below the ephemeral range
// (loopback.FreeAddr).
func freeAddr(t testing.TB) string {
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func (m *Member) start(state string) error {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.Name, m.Dir
	cu, _ := url.Parse(m.etcdURL)
	pu, _ := url.Parse(m.peerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster, cfg.ClusterState, cfg.InitialClusterToken = m.initial, state, "weft-test"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Shared, loaded test machines: a longer election timeout keeps a
	// slow heartbeat from costing the leader; fsync buys tests nothing.
	cfg.TickMs, cfg.ElectionMs = 100, 2500
	cfg.UnsafeNoFsync = !m.fsync
	if m.tls != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: m.tls.ServerCert, KeyFile: m.tls.ServerKey, TrustedCAFile: m.tls.CA, ClientCertAuth: true}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		m.etcd = e
		return nil
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", m.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("member %s: not ready after 60s", m.Name)
	}
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client returns a client of every member, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Stop stops member i as a crash would: its raft node stops at once and
// it stays a member. The rest of Close (which waits up to etcd's request
// timeout, ten seconds, for clients' watch streams) goes on behind.
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	if m.etcd == nil {
		return
	}
	e, done := m.etcd, make(chan struct{})
	m.etcd, m.closed = nil, done
	m.relay.setDown(true)
	e.Server.HardStop()
	m.relay.cut()
	go func() {
		defer close(done)
		e.Close()
	}()
}

// Restart starts a stopped member i again on its data directory. Members
// restarted together regain a quorum together, so they start concurrently.
func (c *Cluster) Restart(is ...int) {
	c.t.Helper()
	errs := make(chan error, len(is))
	for _, i := range is {
		m := c.Members[i]
		go func() {
			<-m.closed
			m.relay.setDown(false)
			errs <- m.start("existing")
		}()
	}
	for range is {
		if err := <-errs; err != nil {
			c.t.Fatalf("etcd restart: %v", err)
		}
	}
}

func (c *Cluster) stopAll() {
	for i, m := range c.Members {
		c.Stop(i)
		if m.closed != nil {
			<-m.closed
		}
		m.relay.close()
	}
}

// WaitWritable waits until a write through cli succeeds.
func WaitWritable(ctx context.Context, cli *clientv3.Client) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Put(wctx, "/etcdtest/ping", "")
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("etcd never became writable: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relay forwards TCP connections to a member; cut resets every one.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool // refuse connections: the member is stopped
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newRelay(target string) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		down := r.down
		r.mu.Unlock()
		if down {
			_ = c.Close() // as a crashed member's port would
			continue
		}
		u, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c], r.conns[u] = true, true
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(c, u)
		go r.pipe(u, c)
	}
}

func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	r.mu.Lock()
	delete(r.conns, dst)
	delete(r.conns, src)
	r.mu.Unlock()
}

func (r *relay) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// cut closes every relayed connection.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		_ = c.Close()
	}
}

func (r *relay) close() {
	_ = r.ln.Close()
	r.cut()
	r.wg.Wait()
}
