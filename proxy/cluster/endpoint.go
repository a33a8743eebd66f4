package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/internal/sockio"
)

// Endpoint is one upstream address of a cluster with its keep-alive
// connection pool and its health, ejection and load counters. An Endpoint
// that stays across DNS refreshes keeps all of them.
type Endpoint struct {
	addr   string
	weight uint32
	c      *Cluster
	client *fasthttp.HostClient
	// streams are the net/http transports for streamed requests and
	// HTTP/2 (transport.go).
	streams streamTransports

	active   atomic.Int64 // requests in Do now (least_request reads it)
	total    atomic.Uint64
	failures atomic.Uint64 // failed attempts fed to Report
	conns    atomic.Int64  // open pooled connections

	unhealthy atomic.Bool // set by active health checks
	ejected   atomic.Bool // set by outlier detection
	// ejectedUntil is the unix-nano time the current ejection ends.
	ejectedUntil atomic.Int64

	consec5xx     atomic.Int32
	consecGateway atomic.Int32
	// sinceSweep counts failed reports since the last outlier sweep; a
	// clean interval lowers the ejection multiplier.
	sinceSweep atomic.Int32
	// refusalLogged is set once a refused ejection was logged, until the
	// endpoint succeeds or is ejected.
	refusalLogged atomic.Bool

	// Guarded by c.mu.
	timesEjected int
	ejectTimer   *time.Timer
	hcStop       chan struct{}
	retired      bool
}

func newEndpoint(c *Cluster, addr string, weight uint32) *Endpoint {
	e := &Endpoint{addr: addr, weight: weight, c: c}
	e.client = &fasthttp.HostClient{
		Addr:        addr,
		DialTimeout: e.dial,
		MaxConns:    c.s.MaxConnsPerEndpoint,
		// A request over MaxConns waits for a connection (it is pending)
		// until its own deadline, or this long.
		MaxConnWaitTimeout:  maxPendingWait,
		MaxIdleConnDuration: c.s.IdleTimeout,
		ReadBufferSize:      responseReadBuffer,
		// Responses are buffered whole: bound them, so a broken or hostile
		// upstream cannot make the proxy hold an unbounded body (it becomes
		// a 502 for that request).
		MaxResponseBodySize: maxResponseBodyBytes,
		// The proxy forwards what it received: no default User-Agent, no
		// header-name or path rewriting.
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		// Requests go through doH1 on the pool's connections, not through
		// HostClient.Do: its own retries never run. Retries belong to the
		// route's policy, but for a request that met a pooled connection
		// the upstream had closed (pooledconn.go).
		MaxIdemponentCallAttempts: 1,
	}
	c.applyTLS(e.client)
	return e
}

// dialTimeout bounds a dial that has timeout left for it (0 or less: no
// bound of its own) by bound: the cluster's connect_timeout, or a health
// check's timeout.
func dialTimeout(timeout, bound time.Duration) time.Duration {
	if timeout <= 0 || timeout > bound {
		return bound
	}
	return timeout
}

// dial opens one pooled connection. It enforces the cluster-wide
// max_connections breaker and connect_timeout, and counts connections.
func (e *Endpoint) dial(addr string, timeout time.Duration) (net.Conn, error) {
	return e.dialCtx(context.Background(), addr, timeout)
}

// dialCtx is dial, ended early also by ctx (a stream's request that was
// cancelled or timed out stops its dial at once). Whatever ended it, a
// dial that did not connect is the endpoint's connect failure (DialError):
// an endpoint that does not answer a SYN within the time the request had,
// as a host that vanished without a reset does, is retried elsewhere at
// once and fed to outlier detection, not waited on by every request.
func (e *Endpoint) dialCtx(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	c := e.c
	if n := c.breakers.connections.Add(1); n > c.s.MaxConnections {
		c.breakers.connections.Add(-1)
		c.stats.RejectedConnections.Add(1)
		return nil, fmt.Errorf("cluster %q: endpoint %s: max_connections %d reached: %w",
			c.name, e.addr, c.s.MaxConnections, ErrOverflow)
	}
	d := net.Dialer{Timeout: dialTimeout(timeout, c.s.ConnectTimeout), Resolver: c.resolver}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.breakers.connections.Add(-1)
		return nil, &DialError{Addr: addr, Err: err}
	}
	c.stats.ConnectionsOpened.Add(1)
	e.conns.Add(1)
	cc := &countedConn{Conn: conn, e: e}
	if tc, ok := conn.(*net.TCPConn); ok && sockio.Available {
		cc.sock = sockio.New(tc)
	}
	return cc, nil
}

// countedConn gives back its max_connections slot when closed.
type countedConn struct {
	net.Conn
	e      *Endpoint
	closed atomic.Bool
	aw     *answerWait // answerwait.go; nil until first used
	// sock reads and writes a plain TCP connection without a thread
	// hand-off per call (sockio); nil over anything else.
	sock *sockio.Socket
	// used is set once a request was sent on the connection, idleFrom
	// when it last went back to the pool (since epoch), peek is the idle
	// check's state (pooledconn.go). Only the request holding the
	// connection touches them.
	used     bool
	idleFrom time.Duration
	peek     *idlePeek
	// While a streamed response body is read (h1stream.go), bodyIdle is
	// its idle bound: each read of the socket first pushes the read
	// deadline that far ahead, once a tenth of it has gone by since
	// bodyPushed, so that every wait on the upstream has its own bound
	// however many reads one size line, CRLF or trailer block takes.
	bodyIdle   time.Duration
	bodyPushed time.Time
}

// paceReads sets the idle bound each read pushes the deadline by (0: none).
func (cc *countedConn) paceReads(idle time.Duration) {
	cc.bodyIdle, cc.bodyPushed = idle, time.Time{}
}

// Read reads from the upstream.
func (cc *countedConn) Read(p []byte) (int, error) {
	if cc.bodyIdle > 0 {
		if now := time.Now(); now.Sub(cc.bodyPushed) > cc.bodyIdle/10 {
			cc.bodyPushed = now
			_ = cc.SetReadDeadline(now.Add(cc.bodyIdle))
		}
	}
	if cc.sock != nil {
		return cc.sock.Read(p)
	}
	return cc.Conn.Read(p)
}

// SetDeadline sets both deadlines (lazily on a plain socket: sockio).
func (cc *countedConn) SetDeadline(t time.Time) error {
	if cc.sock != nil {
		return cc.sock.SetDeadline(t)
	}
	return cc.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline (as SetDeadline).
func (cc *countedConn) SetReadDeadline(t time.Time) error {
	if cc.sock != nil {
		return cc.sock.SetReadDeadline(t)
	}
	return cc.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline (as SetDeadline).
func (cc *countedConn) SetWriteDeadline(t time.Time) error {
	if cc.sock != nil {
		return cc.sock.SetWriteDeadline(t)
	}
	return cc.Conn.SetWriteDeadline(t)
}

// write writes to the upstream.
func (cc *countedConn) write(p []byte) (int, error) {
	if cc.sock != nil {
		return cc.sock.Write(p)
	}
	return cc.Conn.Write(p)
}

// Close closes the connection and frees its slot once.
func (cc *countedConn) Close() error {
	if cc.closed.CompareAndSwap(false, true) {
		cc.e.conns.Add(-1)
		cc.e.c.breakers.connections.Add(-1)
	}
	return cc.Conn.Close()
}

// CloseWrite half-closes the connection (a FIN), so a byte-forwarding
// caller of Endpoint.Dial can pass a downstream's half-close on.
func (cc *countedConn) CloseWrite() error {
	if cw, ok := cc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Address returns the endpoint's host:port.
func (e *Endpoint) Address() string { return e.addr }

// Weight returns the endpoint's load-balancing weight.
func (e *Endpoint) Weight() int { return int(e.weight) }

// Active returns the number of requests in Do on this endpoint now.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// Conns returns the number of open pooled connections to this endpoint.
func (e *Endpoint) Conns() int64 { return e.conns.Load() }

func (e *Endpoint) usable() bool { return !e.unhealthy.Load() && !e.ejected.Load() }

// Do sends req to the endpoint over its keep-alive pool and reads the
// answer into resp, giving up at deadline (zero: no deadline). req must
// carry a RequestURI ("/path?q", or a full http URL) and its Host header;
// Do does not rewrite either. Do counts the request as active (for
// least_request) and enforces the cluster's max_pending breaker: a request
// that finds all max_conns_per_endpoint connections busy is pending until
// one frees. Do does not feed outlier detection: call Report with the
// outcome. Errors classify with Classify.
func (e *Endpoint) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	if err := e.admit(); err != nil {
		return err
	}
	defer e.done()
	c := e.c
	if c.closed.Load() {
		// The cluster was replaced: do not leave a keep-alive connection
		// behind in a pool nobody will close.
		req.SetConnectionClose()
	}
	if c.UsesHTTP2(false) {
		return e.doStream(req, resp, deadline)
	}
	c.setScheme(req)
	req.URI().DisablePathNormalizing = true
	_, err := doH1(e, e.client, (*fasthttp.HostClient).AcquireConn, (*fasthttp.HostClient).CloseConn,
		(*fasthttp.HostClient).ReleaseConn, req, nil, 0, resp, deadline, 0, 0, true)
	return err
}

// admit counts a request active on the endpoint (least_request reads it)
// and enforces the cluster's max_pending breaker: a request that finds all
// max_conns_per_endpoint connections busy is pending until one frees, and
// refused past max_pending. A request admitted ends with done.
func (e *Endpoint) admit() error {
	c := e.c
	e.total.Add(1)
	if e.active.Add(1) > int64(c.s.MaxConnsPerEndpoint) {
		// Every pooled connection is taken: this request waits.
		if c.breakers.pending.Add(1) > c.s.MaxPending {
			c.breakers.pending.Add(-1)
			e.active.Add(-1)
			c.stats.RejectedPending.Add(1)
			return errOverflowPending(c, e)
		}
	}
	return nil
}

func errOverflowPending(c *Cluster, e *Endpoint) error {
	return fmt.Errorf("cluster %q: endpoint %s: max_pending %d reached: %w",
		c.name, e.addr, c.s.MaxPending, ErrOverflow)
}
