package proxy

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/resilience"
	"github.com/weftmesh/weft/proxy/route"
)

// Header set on responses the proxy makes itself for overload, saying why.
const overflowHeader = "X-Weft-Overflow"

// forward sends the request to cs with the route's timeout and retry
// policy and leaves the answer in s.Response: its status and headers, and
// its body unless the body is still streaming from the upstream (then in
// *up, for the caller to pass on and close). The route timeout bounds the
// wait for the response headers; retries decide on them, before any body
// byte reaches the client. in, when not nil, is the request body streaming
// from the client: a try that failed is retried only while the retry
// buffer holds all of the body it read, and a try the body itself ended
// (in.broke) is left for the caller to answer.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, cs *clusterState, r *route.Route, rs *routeState, s *filter.Stream, up *cluster.ResponseBody, in *h1RequestBody) {
	req, resp := s.Request, s.Response
	if !cs.c.AcquireRequest() {
		overflow(s, "max_requests")
		return
	}
	defer cs.c.ReleaseRequest()
	cs.budget.StartRequest()
	defer cs.budget.EndRequest()

	var deadline time.Time // zero: no route timeout
	if r.Timeout > 0 {
		deadline = s.StartTime.Add(r.Timeout) // from when the request arrived
	}
	pol := rs.retry
	perTry := pol.PerTryTimeout()
	if r.PerTryTimeout > 0 {
		perTry = r.PerTryTimeout
	}
	mayRetry := pol.Attempts() > 0 && pol.MethodAllowed(req.Header.Method())
	key, hasKey := cs.c.HashKey(req, s.Source)
	if in != nil {
		in.replay = newReplayBody(in, mayRetry)
		in.replay.mirror = in.x.mirror
	}

	var tried triedEndpoints
	ep := cs.c.Pick(key, hasKey, nil)
	claim := retryClaim{cs: cs}
	defer claim.release()
	for attempt := 0; ; attempt++ {
		fail, status := p.try(cs, req, resp, s, ep, deadline, perTry, up, in)
		claim.release()
		tried.add(ep)
		if in.broke() {
			return // the client's body ended the try: the caller answers
		}
		if fail == resilience.NoFailure && !pol.Retriable(fail, status) {
			return // success, or a failure the policy passes through
		}
		if fail == resilience.Overflow {
			overflow(s, "max_pending")
			return
		}
		// A connect failure sent nothing, so any method may be retried.
		allowed := mayRetry || (fail == resilience.ConnectFailure && pol.Attempts() > 0)
		retry := allowed && attempt < pol.Attempts() && pol.Retriable(fail, status) && (deadline.IsZero() || time.Now().Before(deadline)) &&
			(in == nil || in.replay.replayable() || in.replay.untouched())
		if !retry {
			giveUp(s, attempt, fail)
			return
		}
		var ok bool
		if ep, ok = nextTry(cs, pol, s, &claim, fail, key, hasKey, &tried, attempt, deadline); !ok {
			giveUp(s, attempt, fail)
			return
		}
		cs.stats.Retries.Inc()
		s.Retries++
	}
}

// triedEndpoints are the endpoints a request has tried, so that a retry
// goes to another one when it can (Envoy's previous_hosts predicate). It
// keeps the first few: every try under any sane attempts.
type triedEndpoints struct {
	eps [8]*cluster.Endpoint
	n   int
}

func (t *triedEndpoints) add(e *cluster.Endpoint) {
	if e != nil && t.n < len(t.eps) && !t.has(e) {
		t.eps[t.n] = e
		t.n++
	}
}

func (t *triedEndpoints) has(e *cluster.Endpoint) bool {
	for _, x := range t.eps[:t.n] {
		if x == e {
			return true
		}
	}
	return false
}

// pickUntried picks an endpoint for a retry, avoiding those tried.
func pickUntried(c *cluster.Cluster, key uint64, hasKey bool, tried *triedEndpoints) *cluster.Endpoint {
	return c.PickUntried(key, hasKey, tried.eps[:tried.n])
}

// nextTry readies a retry and returns the endpoint it goes to (nil: none
// is usable, the try then fails as no healthy upstream), or false when the
// breaker or the budget refused the retry. A connect failure retried on an
// endpoint not tried yet goes at once and outside the retry budget: the
// failed try reached no upstream, so the retry moves the request's load
// instead of adding to it, and one dead endpoint does not spend the budget
// healthy traffic needs. Every other retry takes a budget slot and waits
// its backoff. The HTTP/1.1 and the stream retry loops share it.
func nextTry(cs *clusterState, pol *resilience.Policy, s *filter.Stream, claim *retryClaim,
	fail resilience.Failure, key uint64, hasKey bool, tried *triedEndpoints, attempt int, deadline time.Time) (*cluster.Endpoint, bool) {
	ep := pickUntried(cs.c, key, hasKey, tried)
	moved := fail == resilience.ConnectFailure && ep != nil && !tried.has(ep)
	if !claim.admit(pol, s, moved) {
		return nil, false
	}
	if !moved {
		waitBackoff(pol, attempt+1, deadline)
		ep = pickUntried(cs.c, key, hasKey, tried) // the view may have changed meanwhile
	}
	return ep, true
}

// retryClaim is a request's hold on its cluster's retry breaker
// (max_retries) and, unless the retry is free, its retry budget while one
// of its retries is in flight. The HTTP/1.1 and the stream retry loops
// share it.
type retryClaim struct {
	cs       *clusterState
	held     bool
	budgeted bool
}

// admit takes a retry slot: the max_retries breaker first (a refusal
// flags the answer UO), then, unless free, the retry budget (a refusal
// is counted).
func (c *retryClaim) admit(pol *resilience.Policy, s *filter.Stream, free bool) bool {
	if !c.cs.c.AcquireRetry() {
		s.ResponseFlags = "UO"
		return false
	}
	if !free {
		if !c.cs.budget.TryRetry(pol) {
			c.cs.c.ReleaseRetry()
			c.cs.stats.BudgetExhausted.Inc()
			return false
		}
		c.budgeted = true
	}
	c.held = true
	return true
}

// release gives the slot back once the retry's try has ended.
func (c *retryClaim) release() {
	if c.held {
		if c.budgeted {
			c.cs.budget.EndRetry()
		}
		c.cs.c.ReleaseRetry()
		c.held, c.budgeted = false, false
	}
}

// giveUp ends a request's tries: URX when it had retried, and the local
// answer for a last try that got no response.
func giveUp(s *filter.Stream, attempt int, fail resilience.Failure) {
	if attempt > 0 && s.ResponseFlags == "" {
		s.ResponseFlags = "URX"
	}
	if fail != resilience.NoFailure {
		failResponse(s, fail)
	}
}

// waitBackoff waits the policy's backoff before retry n, never past
// deadline (zero: none).
func waitBackoff(pol *resilience.Policy, n int, deadline time.Time) {
	b := pol.Backoff(n)
	if rem := time.Until(deadline); !deadline.IsZero() && b > rem {
		b = rem
	}
	if b > 0 {
		time.Sleep(b)
	}
}

// try sends one attempt to ep (nil: no usable endpoint) and classifies
// its outcome. deadline (the route's) bounds all of it; perTry (0: none)
// bounds it from when it has a connection and sent its request body
// (cluster/pertry.go), so a slow connect is bounded by connect_timeout and
// the route, not by the per-try timeout, as in Envoy.
func (p *Proxy) try(cs *clusterState, req *fasthttp.Request, resp *fasthttp.Response, s *filter.Stream,
	ep *cluster.Endpoint, deadline time.Time, perTry time.Duration, up *cluster.ResponseBody, in *h1RequestBody) (resilience.Failure, int) {
	if *up != nil {
		// A retry: the previous answer's body is not wanted.
		_ = (*up).Close()
		*up = nil
	}
	if ep == nil {
		cs.stats.NoHealthy.Inc()
		return resilience.NoEndpoint, 0
	}
	s.UpstreamAddr = ep.Address()
	cs.stats.Requests.Inc()
	var body cluster.ResponseBody
	var err error
	if in != nil {
		src, size := in.upstream()
		body, err = ep.DoTry(req, src, size, resp, deadline, perTry)
		if in.broke() {
			// The client's body failed, not the upstream: nothing to
			// report against the endpoint.
			if body != nil {
				_ = body.Close()
			}
			return resilience.Reset, 0
		}
	} else {
		body, err = ep.DoTry(req, nil, 0, resp, deadline, perTry)
	}
	*up = body
	ep.Report(resp.StatusCode(), err)
	if err == nil {
		return resilience.NoFailure, resp.StatusCode()
	}
	switch cluster.Classify(err) {
	case cluster.ConnectFailure:
		cs.stats.ConnectFailures.Inc()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			// The route's timeout ended the connect: the endpoint's
			// connect failure (reported above, so a silent endpoint is
			// still ejected), and the request's timeout, answered 504 UT
			// as Envoy does and as the stream transports do.
			cs.stats.Timeouts.Inc()
			return resilience.Timeout, 0
		}
		return resilience.ConnectFailure, 0
	case cluster.Timeout:
		cs.stats.Timeouts.Inc()
		return resilience.Timeout, 0
	case cluster.Overflow:
		return resilience.Overflow, 0
	default:
		cs.stats.Resets.Inc()
		return resilience.Reset, 0
	}
}

// failResponse answers for a request that got no upstream response, the
// way Envoy does: 503 for no endpoint or connect failure, 504 for a
// timeout, 502 for a connection closed mid-response.
func failResponse(s *filter.Stream, f resilience.Failure) {
	var flags string
	switch f {
	case resilience.NoEndpoint:
		s.SendLocalReply(fasthttp.StatusServiceUnavailable, []byte("no healthy upstream\n"), nil)
		flags = "UH"
	case resilience.ConnectFailure:
		s.SendLocalReply(fasthttp.StatusServiceUnavailable, []byte("upstream connect error\n"), nil)
		flags = "UF"
	case resilience.Timeout:
		s.SendLocalReply(fasthttp.StatusGatewayTimeout, []byte("upstream request timeout\n"), nil)
		flags = "UT"
	default:
		s.SendLocalReply(fasthttp.StatusBadGateway, []byte("upstream reset before response complete\n"), nil)
		flags = "UC"
	}
	if s.Retries > 0 {
		flags += ",URX"
	}
	s.ResponseFlags = flags
}

// overflow answers 503 when a circuit breaker refuses, naming the limit.
func overflow(s *filter.Stream, why string) {
	s.SendLocalReply(fasthttp.StatusServiceUnavailable, []byte("upstream overflow: "+why+"\n"), [][2]string{{overflowHeader, why}})
	s.ResponseFlags = "UO"
}

// mirror sends a copy of req, body included, to the route's shadow
// cluster, fire and forget: its answer is discarded and it never delays
// the real request. Copies beyond the concurrency bound are dropped.
func (p *Proxy) mirror(snap *snapshot, r *route.Route, req *fasthttp.Request) {
	if m := p.startMirror(snap, r, req); m != nil {
		m.send()
	}
}

// mirrorBodyLimit bounds the copy of a streamed request body a mirror
// keeps (Envoy mirrors the body it buffered, up to its buffer limit): a
// longer body is not mirrored. With at most cap(mirrorSem) mirrors at
// once, mirrors hold at most 64 × 256 KiB.
const mirrorBodyLimit = 256 << 10

// mirrorCopy is a mirror of a request whose body streams: it takes a copy
// of the body as the upstream tries read it (replayBody), and is sent when
// the body ends, or dropped when the body outgrows mirrorBodyLimit, fails,
// or is not read to its end. It holds a place in p.mirrorSem until then.
type mirrorCopy struct {
	p    *Proxy
	cs   *clusterState
	req  *fasthttp.Request
	mu   sync.Mutex
	body []byte
	want int  // the body's Content-Length (-1: unknown, it ends at EOF)
	over bool // the body outgrew mirrorBodyLimit
	done bool // sent or dropped
}

// startMirror samples the route's mirror and takes a place for it: nil
// when this request is not mirrored (not sampled, or mirrors saturated).
// The copy is req as it is now (a streamed body is not in it yet).
func (p *Proxy) startMirror(snap *snapshot, r *route.Route, req *fasthttp.Request) *mirrorCopy {
	if !r.Mirror.Sample(rand.Uint64()) {
		return nil
	}
	select {
	case p.mirrorSem <- struct{}{}:
	default:
		p.mirrorsSaturated.Inc()
		return nil
	}
	m := &mirrorCopy{p: p, cs: snap.clusters[r.Mirror.Index], req: fasthttp.AcquireRequest(), want: req.Header.ContentLength()}
	req.CopyTo(m.req)
	m.fixHost()
	if m.want > mirrorBodyLimit {
		m.over = true // known too long: give up at once
		m.drop()
		return nil
	}
	return m
}

// fixHost gives the copy the shadow's Host: like Envoy, the host name with
// "-shadow" appended (before any port).
func (m *mirrorCopy) fixHost() {
	cp := m.req
	host := cp.Host()
	port := []byte(nil)
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		host, port = host[:i], host[i:]
	}
	shadowHost := append(append(append(make([]byte, 0, 64), host...), "-shadow"...), port...)
	cp.URI().SetHostBytes(shadowHost)
	cp.Header.SetHostBytes(shadowHost)
}

// add copies a piece of the streamed body; past mirrorBodyLimit the copy
// is given up (the mirror is dropped when the body ends). It reports
// whether the body is complete: its Content-Length reached (a reader of
// a body with a length need not read on to its EOF).
func (m *mirrorCopy) add(b []byte) (complete bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done || m.over {
		return false
	}
	if len(m.body)+len(b) > mirrorBodyLimit {
		m.over, m.body = true, nil
		return false
	}
	m.body = append(m.body, b...)
	return m.want >= 0 && len(m.body) == m.want
}

// bodyEnded sends the copy with the whole body, or drops it when the body
// outgrew the limit.
func (m *mirrorCopy) bodyEnded() {
	m.mu.Lock()
	if m.done {
		m.mu.Unlock()
		return
	}
	if m.over {
		m.mu.Unlock()
		m.drop()
		return
	}
	m.done = true
	m.mu.Unlock()
	// The copy goes with a Content-Length; the trailers are not mirrored.
	m.req.Header.Del("Trailer")
	m.req.Header.Del("Transfer-Encoding")
	m.req.SetBodyRaw(m.body)
	m.launch()
}

// drop gives the mirror up: its body outgrew the limit (counted), failed,
// or was not read to its end.
func (m *mirrorCopy) drop() {
	m.mu.Lock()
	if m.done {
		m.mu.Unlock()
		return
	}
	m.done = true
	over := m.over
	m.mu.Unlock()
	if over {
		m.p.mirrorsTooLarge.Inc()
	}
	fasthttp.ReleaseRequest(m.req)
	<-m.p.mirrorSem
}

// send sends a copy whose body is already in m.req.
func (m *mirrorCopy) send() {
	m.mu.Lock()
	m.done = true
	m.mu.Unlock()
	m.launch()
}

// launch sends m.req on its own goroutine, then gives its place back.
func (m *mirrorCopy) launch() {
	p, cs, cp := m.p, m.cs, m.req
	go func() {
		defer func() { <-p.mirrorSem }()
		defer fasthttp.ReleaseRequest(cp)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		ep := cs.c.Pick(0, false, nil)
		if ep == nil {
			return
		}
		err := ep.Do(cp, resp, time.Now().Add(5*time.Second))
		ep.Report(resp.StatusCode(), err)
	}()
}

// upgradeHandshakeTimeout bounds the upstream's answer to an Upgrade.
const upgradeHandshakeTimeout = 10 * time.Second

// upgradeIdleTimeout closes an upgraded connection nobody uses.
const upgradeIdleTimeout = time.Hour

// upgrade passes an Upgrade (WebSocket) request through. It dials an
// endpoint through the cluster (breakers, connect timeout, mTLS), forwards
// the request and reads the upstream's answer. Only a 101 hijacks the
// client's connection and splices the two; any other answer is an ordinary
// response, so the client's connection stays under routing, filters and
// authz for its next requests.
func (p *Proxy) upgrade(ctx *fasthttp.RequestCtx, cs *clusterState, s *filter.Stream) {
	if !cs.c.AcquireRequest() {
		overflow(s, "max_requests")
		return
	}
	hijacked := false
	defer func() {
		if !hijacked {
			cs.c.ReleaseRequest()
		}
	}()
	ep := cs.c.Pick(0, false, nil)
	if ep == nil {
		failResponse(s, resilience.NoEndpoint)
		return
	}
	s.UpstreamAddr = ep.Address()
	up, err := ep.Dial()
	if err != nil {
		ep.Report(0, err)
		failResponse(s, resilience.ConnectFailure)
		return
	}
	_ = up.SetDeadline(time.Now().Add(upgradeHandshakeTimeout))
	w := bufio.NewWriter(up)
	// One err for the whole handshake: a failed write must not be lost.
	err = s.Request.Write(w)
	if err == nil {
		err = w.Flush()
	}
	br := bufio.NewReader(up)
	if err == nil {
		err = s.Response.Header.Read(br)
	}
	if err != nil {
		_ = up.Close()
		ep.Report(0, err)
		failResponse(s, resilience.Reset)
		return
	}
	if s.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Refused: an ordinary response, body and all.
		err := s.Response.ReadBody(br, upgradeRefusalMaxBody)
		_ = up.Close()
		ep.Report(s.Response.StatusCode(), err)
		if err != nil {
			failResponse(s, resilience.Reset)
		}
		return
	}
	ep.Report(fasthttp.StatusSwitchingProtocols, nil)
	_ = up.SetDeadline(time.Time{})
	head := append([]byte(nil), s.Response.Header.Header()...)
	hijacked = true
	log, c := p.log, cs.c
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(down net.Conn) {
		defer c.ReleaseRequest()
		defer up.Close()
		if _, err := down.Write(head); err != nil {
			return
		}
		done := make(chan struct{}, 2)
		go func() { _ = copyIdle(up, down, upgradeIdleTimeout); closeWrite(up); done <- struct{}{} }()
		go func() {
			_ = copyIdle(down, readerConn{br, up}, upgradeIdleTimeout)
			closeWrite(down)
			done <- struct{}{}
		}()
		<-done
		<-done
		log.Debug("upgrade closed", zap.String("upstream", ep.Address()))
	})
}

// upgradeRefusalMaxBody bounds the body of an upstream's refusal.
const upgradeRefusalMaxBody = 1 << 20

// readerConn reads through a bufio.Reader (bytes the upstream sent right
// after its 101) but sets deadlines on the connection.
type readerConn struct {
	r *bufio.Reader
	net.Conn
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// copyIdle copies src to dst until EOF or an error, giving up when src is
// silent for idle.
func copyIdle(dst io.Writer, src net.Conn, idle time.Duration) error {
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

func closeWrite(c net.Conn) {
	// fasthttp's hijacked connection neither half-closes nor closes: reach
	// the real one, so the peer sees our FIN.
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		c = u.UnsafeConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
