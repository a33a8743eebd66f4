package tcpproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/listener"
	"github.com/weftmesh/weft/proxy/telemetry"
)

// handshakeTimeout bounds a downstream TLS handshake.
const handshakeTimeout = 10 * time.Second

// Options configure one tcp listener.
type Options struct {
	// Name is the listener's name (errors and logs).
	Name string
	// Address is where to listen; port 0 picks a free port.
	Address string
	// Route returns the config in force. It is asked once per accepted
	// connection, which keeps the answer until it closes; nil refuses the
	// connection.
	Route func() *Route
	// TLSSelect, when set, is asked per connection for the listener's TLS
	// mode and config (see listener.WrapTLS); nil: plaintext.
	TLSSelect listener.TLSSelector
	// Logger receives connection errors at debug level; nil: none.
	Logger *zap.Logger
}

// Server is a bound tcp listener and the connections it forwards.
type Server struct {
	name   string
	ln     net.Listener
	route  func() *Route
	log    *zap.Logger
	open   atomic.Int64 // connections being handled (max_connections)
	served chan struct{}

	mu      sync.Mutex // guards closing, conns and wg.Add
	closing bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// Listen binds the address (so a busy port fails before any config swap)
// and prepares the server; Serve starts accepting.
func Listen(o Options) (*Server, error) {
	if o.Route == nil {
		return nil, fmt.Errorf("tcp listener %q: no route", o.Name)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", o.Name, err)
	}
	if o.TLSSelect != nil {
		ln = listener.WrapTLS(ln, o.TLSSelect)
	}
	return &Server{name: o.Name, ln: ln, route: o.Route, log: o.Logger.With(zap.String("listener", o.Name)),
		served: make(chan struct{}), conns: make(map[net.Conn]struct{})}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Name is the listener's name.
func (s *Server) Name() string { return s.name }

// Serve accepts connections until Shutdown, each handled in its own
// goroutine. It returns nil after Shutdown.
func (s *Server) Serve() error {
	defer close(s.served)
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // EMFILE and friends
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("listener %q: %w", s.name, err)
		}
		backoff = 5 * time.Millisecond
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		go s.handle(c)
	}
}

// track registers a connection (and its goroutine) unless shutting down.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, lets open connections run until they close or
// ctx ends, then closes the rest and waits for their goroutines (a dial in
// progress is bounded by its connect timeout).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	select {
	case <-s.served:
	case <-ctx.Done():
	}
	return err
}

// conn is one downstream connection's bookkeeping.
type conn struct {
	start     time.Time
	flags     string
	upstream  string
	principal string
	in, out   int64
}

// handle runs one connection: TLS handshake, authorization, endpoint
// choice, dial, splice; then metrics and the access log line.
func (s *Server) handle(c net.Conn) {
	defer s.untrack(c)
	defer c.Close()
	r := s.route()
	if r == nil {
		return
	}
	st := r.stats
	st.conns.Inc()
	st.active.Inc()
	cn := conn{start: time.Now()}
	defer func() {
		st.active.Dec()
		s.logEntry(r, c, &cn)
	}()
	if s.open.Add(1) > r.maxConns {
		s.open.Add(-1)
		cn.refuse(st, rMaxConns, "DO")
		return
	}
	defer s.open.Add(-1)

	var info *filter.TLSInfo
	if tc, ok := c.(*listener.TLSConn); ok {
		_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil {
			cn.refuse(st, rTLS, "DPE")
			s.log.Debug("tls handshake failed", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
			return
		}
		_ = tc.SetDeadline(time.Time{})
		if info = tc.TLSInfo(); info != nil && info.MTLS {
			cn.principal = info.PeerURISAN
		}
	}
	if r.authz != nil {
		fs := filter.Stream{TLS: info, Source: c.RemoteAddr(), Destination: c.LocalAddr(), Listener: r.listener, Direction: r.direction}
		if d := r.authz.Check(&fs); d != nil {
			cn.refuse(st, rAuthz, "UAEX")
			s.log.Debug("connection denied", zap.String("rule", d.Rule), zap.String("principal", cn.principal))
			return
		}
	}

	ch := newChain(r.filters, filter.Stream{TLS: info, Source: c.RemoteAddr(), Destination: c.LocalAddr(),
		Listener: r.listener, Direction: r.direction, StartTime: cn.start, ClusterName: r.cluster.Name(),
		ListenerMetadata: r.metadata[0], ClusterMetadata: r.metadata[1], HostMetadata: r.hostMetadata})
	if ch != nil {
		defer ch.done()
		if !ch.open() {
			cn.refuse(st, rFilter, flagFilterClosed)
			return
		}
	}

	req := fasthttp.AcquireRequest() // ring_hash on a header or cookie finds none: random
	key, hasKey := r.cluster.HashKey(req, c.RemoteAddr())
	fasthttp.ReleaseRequest(req)
	ep := r.cluster.Pick(key, hasKey, nil)
	if ep == nil {
		cn.refuse(st, rNoHealthy, "UH")
		return
	}
	cn.upstream = ep.Address()
	if ch != nil {
		ch.s.UpstreamAddr = cn.upstream
	}
	up, err := s.dial(ep, r.connectTimeout)
	if err != nil {
		if errors.Is(err, cluster.ErrOverflow) {
			cn.refuse(st, rOverflow, "UO")
		} else {
			cn.refuse(st, rConnect, "UF")
			ep.Report(0, err)
		}
		s.log.Debug("upstream connect failed", zap.String("cluster", r.cluster.Name()), zap.Error(err))
		return
	}
	ep.Report(0, nil)
	t := newTunnel(c, up, r.idleTimeout)
	t.chain = ch
	cn.in, cn.out, cn.flags = t.run(st.in, st.out)
}

func (cn *conn) refuse(st *stats, why reason, flag string) {
	st.refused[why].Inc()
	cn.flags = flag
}

// errConnectTimeout is a tcp.connect_timeout that passed while dialing.
var errConnectTimeout = errors.New("connect_timeout reached")

// dial connects to ep through the cluster (breakers, connect_timeout, mTLS),
// within timeout when one is set: the dial then runs in a goroutine of its
// own, and a connection it makes after the caller gave up is closed.
func (s *Server) dial(ep *cluster.Endpoint, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		return ep.Dial()
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	var state atomic.Int32 // 0 pending, 1 abandoned, 2 delivered
	s.wg.Add(1)            // s.closing may be set, but this connection's own Add keeps the count above 0
	go func() {
		defer s.wg.Done()
		c, err := ep.Dial()
		if !state.CompareAndSwap(0, 2) {
			if c != nil {
				_ = c.Close()
			}
			return
		}
		ch <- result{c, err}
	}()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-tm.C:
		if state.CompareAndSwap(0, 1) {
			return nil, &cluster.DialError{Addr: ep.Address(), Err: errConnectTimeout}
		}
		r := <-ch // delivered just now
		return r.c, r.err
	}
}

// protocolTCP is the access log's protocol field for a connection.
var protocolTCP = []byte("TCP")

// logEntry writes the connection's access log line, with the access log
// of the config in force when it closes (the one it started with may have
// been closed by a swap).
func (s *Server) logEntry(r *Route, c net.Conn, cn *conn) {
	al := r.accessLog
	if cur := s.route(); cur != nil {
		al = cur.accessLog
	}
	if al == nil {
		return
	}
	e := telemetry.Entry{
		Start:         cn.start,
		Protocol:      protocolTCP,
		ResponseFlags: cn.flags,
		BytesReceived: int(cn.in),
		BytesSent:     int(cn.out),
		Duration:      time.Since(cn.start),
		UpstreamHost:  cn.upstream,
		Cluster:       r.cluster.Name(),
		Remote:        c.RemoteAddr().String(),
		PeerPrincipal: cn.principal,
	}
	al.Log(&e)
}
