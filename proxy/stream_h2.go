package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/cluster/h2client"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/httpheader"
	"github.com/weftmesh/weft/proxy/listener"
	"github.com/weftmesh/weft/proxy/resilience"
	"github.com/weftmesh/weft/proxy/route"
)

// The HTTP/2 side of the data plane. Each HTTP/2 stream (from the
// listener's HTTP/2 codec) takes the same path as an HTTP/1.1 request:
// its headers become the stream's Request headers, so request ids,
// forwarding headers, tracing, the filter chain, authz, routing and the
// route's edits run unchanged; then the body streams to the upstream and
// the answer streams back, DATA frame by DATA frame, with trailers. gRPC
// gets its own answers for what weft decides locally (trailers-only, with
// a grpc-status), its deadline (grpc-timeout) and its retry conditions.

// h2Exchange is an HTTP/2 stream's state beside the pooled exchange.
type h2Exchange struct {
	w    http.ResponseWriter
	r    *http.Request
	grpc bool
	// upstream is the answer whose body is still streaming (nil when the
	// response is a local one, in Stream.Response).
	upstream *http.Response
	// cancel ends the stream's upstream work (the stream goroutine only);
	// stop ends the stream's context from any goroutine (set once).
	cancel context.CancelCauseFunc
	stop   context.CancelCauseFunc
	body   *replayBody
	// out is the response body bytes sent, for the access log
	out int64

	// mu serialises the stream's filter callbacks: request body chunks
	// arrive on the transport's goroutine while the response is handled
	// on the stream's. finished (under mu) stops them once the filters
	// have ended.
	mu       sync.Mutex
	finished bool
	// bodyReply is set when a request body filter answered locally.
	bodyReply bool
	// filteredBody: the request body passes through the filters.
	filteredBody bool
	// reportTo is the endpoint whose gRPC answer's status is reported to
	// outlier detection once its trailers arrive.
	reportTo *cluster.Endpoint
}

// replied reports whether a request body (or trailers) filter answered
// locally.
func (h *h2Exchange) replied() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bodyReply
}

// filtered reports whether the stream's bodies pass through filters.
func (x *exchange) filtered() bool { return x.chain.Len() > 0 }

var protoHTTP2 = []byte("HTTP/2.0")

// bodyIn is how many request body bytes went upstream (or were read).
func (h *h2Exchange) bodyIn() int64 {
	if h.body == nil {
		return 0
	}
	return h.body.read.Load()
}

// serveH2 is the HTTP/2 stream handler of one listener.
func (rl *runningListener) serveH2(w http.ResponseWriter, r *http.Request) {
	ls := rl.state.Load()
	if ls == nil {
		http.Error(w, "listener is not configured", http.StatusServiceUnavailable)
		return
	}
	x := acquireExchange()
	defer releaseExchange(x)
	ls.active.Inc()
	defer ls.active.Dec()

	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	resp.Header.SetNoDefaultContentType(true)
	h2RequestHeaders(w, r, req)
	s := &x.stream
	s.Request, s.Response = req, resp
	s.StartTime = time.Now()
	s.GRPCStatus = -1
	s.Limits = ls.filterLimits()
	if ci := listener.ConnInfoFrom(r.Context()); ci != nil {
		s.ConnID, s.Source, s.Destination, s.TLS = ci.ID, ci.Remote, ci.Local, ci.TLS
	} else {
		a, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		if a == nil {
			a = &net.TCPAddr{}
		}
		s.Source, s.Destination = a, a
	}
	s.Listener, s.Direction = ls.name, ls.direction
	ls.stampMetadata(s)
	s.NodeID, s.NodeMetadata = ls.snap.cfg.Node.ID, ls.snap.cfg.Node.Metadata
	s.ID = setRequestID(&req.Header, &x.idBuf)
	x.xff = setForwarded(&req.Header, s.Source, s.TLS != nil, x.xff)
	if tr := ls.snap.tracer; tr != nil {
		x.span = tr.Start(&req.Header, ls.direction == "inbound", s.StartTime)
		s.Trace = x.span
	}
	h := &h2Exchange{w: w, r: r, grpc: isGRPC(&req.Header)}
	x.h2 = h
	defer func() {
		if h.upstream != nil {
			_ = h.upstream.Body.Close()
		}
		if h.cancel != nil {
			h.cancel(nil)
		}
	}()
	s.RequestBodyStreamed = r.Body != nil && r.Body != http.NoBody

	if ls.sec.authz != nil {
		ls.sec.authz.StripRequestPrincipal(&req.Header)
	}
	for _, f := range ls.filters {
		x.chain.Add(f, s)
	}
	if x.chain.DecodeFrom(s, 0) == filter.Continue && ls.authorize(s) {
		rl.route(nil, ls, x, false)
	}
	if h.upstream != nil {
		s.ResponseBodyStreamed = true
	}
	h.mu.Lock()
	st := x.chain.Encode(s)
	h.mu.Unlock()
	if st == filter.LocalReply && h.upstream != nil {
		// A response filter answered instead of the upstream.
		_ = h.upstream.Body.Close()
		h.upstream = nil
		s.ResponseBodyStreamed = false
	}
	abort := rl.writeH2(x)
	h.mu.Lock()
	h.finished = true // a late request body chunk no longer reaches the filters
	h.mu.Unlock()
	rl.finish(nil, ls, x)
	if abort {
		// Reset the client's stream (RST_STREAM): the answer broke midway.
		panic(http.ErrAbortHandler)
	}
}

// h2RequestHeaders copies an HTTP/2 request's pseudo-headers and headers
// into a fasthttp request header, which the filters, authz and the route
// table read and edit in place.
func h2RequestHeaders(w http.ResponseWriter, r *http.Request, req *fasthttp.Request) {
	req.Header.DisableNormalizing()
	req.Header.SetMethod(r.Method)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	req.Header.SetRequestURI(uri)
	req.Header.SetHost(r.Host)
	req.Header.SetProtocol("HTTP/2.0")
	req.URI().DisablePathNormalizing = true
	if fields := listener.RequestFields(w, r); fields != nil && !repeatsCookie(fields) {
		// weft's own HTTP/2 server: the names are lower case already.
		for _, f := range fields {
			if f.Name != "host" && f.Name != "trailer" { // as r.Header has them
				req.Header.Add(f.Name, f.Value)
			}
		}
		if r.ContentLength > 0 {
			req.Header.SetContentLength(int(r.ContentLength))
		}
		return
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		for _, v := range vs {
			req.Header.Add(lk, v)
		}
	}
	if r.ContentLength > 0 {
		req.Header.SetContentLength(int(r.ContentLength))
	}
}

// repeatsCookie reports whether a request has more than one cookie field
// (which r.Header has joined into one, RFC 9113 §8.2.3).
func repeatsCookie(fields []hpack.HeaderField) bool {
	n := 0
	for _, f := range fields {
		if f.Name == "cookie" {
			n++
		}
	}
	return n > 1
}

// forwardStream sends the stream to cs with the route's timeout and retry
// policy. On success x.h2.upstream holds the answer (headers copied into
// the stream's Response, body still streaming); otherwise the Response is
// the local reply.
func (p *Proxy) forwardStream(x *exchange, cs *clusterState, r *route.Route, rs *routeState) {
	s, h := &x.stream, x.h2
	if !cs.c.AcquireRequest() {
		overflow(s, "max_requests")
		return
	}
	defer cs.c.ReleaseRequest()
	cs.budget.StartRequest()
	defer cs.budget.EndRequest()

	// Deadlines: a gRPC caller's grpc-timeout bounds the whole call (and
	// is passed on, shortened by the time spent here); the route timeout
	// bounds the wait for the response headers, so a long stream is not
	// cut while an upstream that never answers still is.
	ctx, cancel := context.WithCancelCause(h.r.Context())
	h.cancel, h.stop = cancel, cancel
	var callDeadline time.Time
	if h.grpc {
		if d, ok := grpcTimeout(s.Request.Header.Peek("grpc-timeout")); ok {
			callDeadline = s.StartTime.Add(d)
			var stopDeadline context.CancelFunc
			ctx, stopDeadline = context.WithDeadline(ctx, callDeadline)
			h.cancel = func(cause error) { stopDeadline(); cancel(cause) }
		}
	}
	var headerDeadline time.Time
	if r.Timeout > 0 {
		headerDeadline = s.StartTime.Add(r.Timeout)
	}
	pol := rs.retry
	perTry := pol.PerTryTimeout()
	if r.PerTryTimeout > 0 {
		perTry = r.PerTryTimeout
	}
	mayRetry := pol.Attempts() > 0 && (pol.MethodAllowed(s.Request.Header.Method()) || (h.grpc && pol.GRPC()))
	if s.RequestBodyStreamed {
		var src io.ReadCloser = h.r.Body
		if x.filtered() {
			src = &filteredBody{x: x, src: h.r.Body}
			h.filteredBody = true
		}
		h.body = newReplayBody(src, mayRetry)
		h.body.mirror = x.mirror
	}
	key, hasKey := cs.c.HashKey(s.Request, s.Source)
	var tried triedEndpoints
	ep := cs.c.Pick(key, hasKey, nil)
	claim := retryClaim{cs: cs}
	defer claim.release()
	for attempt := 0; ; attempt++ {
		fail, status, grpcStatus := p.tryStream(ctx, x, cs, ep, headerDeadline, callDeadline, perTry)
		claim.release()
		tried.add(ep)
		if h.replied() {
			return // a request body filter answered: its reply is the response
		}
		retriable := pol.Retriable(fail, status) || (fail == resilience.NoFailure && h.grpc && pol.RetriableGRPC(grpcStatus))
		if fail == resilience.NoFailure && !retriable {
			return // success, or an answer the policy passes through
		}
		if fail == resilience.Overflow {
			overflow(s, "max_pending")
			return
		}
		// A connect failure sent nothing (no body byte either, when none
		// was read yet), so any method may be retried.
		unsent := fail == resilience.ConnectFailure && pol.Attempts() > 0 && (h.body == nil || h.body.untouched())
		deadline := earliest(headerDeadline, callDeadline)
		retry := (mayRetry || unsent) && retriable && attempt < pol.Attempts() && (h.body == nil || h.body.replayable() || unsent) &&
			(deadline.IsZero() || time.Now().Before(deadline))
		if !retry {
			giveUp(s, attempt, fail)
			return // the last answer (in h.upstream), if any, goes to the client
		}
		if h.upstream != nil {
			_ = h.upstream.Body.Close()
			h.upstream = nil
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

// earliest is the earlier of two deadlines (zero: none).
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// errRouteTimeout ends a try whose response headers did not come within
// the route (or per-try) timeout.
var errRouteTimeout = errors.New("upstream response headers timeout")

// tryStream sends one attempt to ep (nil: no usable endpoint); on an
// answer it leaves it in x.h2.upstream with its status and headers copied
// into the stream's Response. headerDeadline bounds the wait for the
// answer's headers, connecting included; perTry (0: none) bounds it from
// when the transport had a connection and sent the request whole, its
// body to the end (cluster/pertry.go), as Envoy's per-try timeout.
func (p *Proxy) tryStream(parent context.Context, x *exchange, cs *clusterState, ep *cluster.Endpoint,
	headerDeadline, callDeadline time.Time, perTry time.Duration) (resilience.Failure, int, int) {
	s, h := &x.stream, x.h2
	if ep == nil {
		cs.stats.NoHealthy.Inc()
		return resilience.NoEndpoint, 0, -1
	}
	s.UpstreamAddr = ep.Address()
	ctx, cancel := context.WithCancelCause(parent)
	var timer *time.Timer
	if !headerDeadline.IsZero() {
		timer = time.AfterFunc(time.Until(headerDeadline), func() { cancel(errRouteTimeout) })
	}
	var tt *cluster.TryTimer
	if perTry > 0 {
		tt = cluster.NewTryTimer(perTry, func() { cancel(errRouteTimeout) })
	}
	out, err := h.outbound(ctx, s, callDeadline, cs.c.AlwaysHTTP2(true))
	if err != nil {
		cancel(nil)
		return resilience.Reset, 0, -1
	}
	cs.stats.Requests.Inc()
	resp, err := ep.RoundTripTry(out, true, tt)
	late := timer != nil && !timer.Stop()
	if tt != nil && tt.Stop() {
		late = true
	}
	if late && err == nil {
		// A timer fired as the headers arrived: the try timed out.
		_ = resp.Body.Close()
		resp, err = nil, errRouteTimeout
	}
	if err != nil {
		cancel(nil)
		if errors.Is(context.Cause(ctx), errRouteTimeout) || errors.Is(err, errRouteTimeout) {
			ep.Report(0, fasthttp.ErrTimeout)
			cs.stats.Timeouts.Inc()
			return resilience.Timeout, 0, -1
		}
		// The caller's grpc-timeout passed: the upstream was given the
		// same deadline (never an earlier one), and its reset can arrive
		// before parent's own timer has fired on a busy machine, so the
		// clock decides, not parent.Err alone.
		if errors.Is(parent.Err(), context.DeadlineExceeded) || (!callDeadline.IsZero() && !time.Now().Before(callDeadline)) {
			cs.stats.Timeouts.Inc()
			return resilience.Timeout, 0, -1
		}
		if parent.Err() != nil {
			return resilience.Reset, 0, -1 // the caller went away
		}
		ep.Report(0, err)
		switch cluster.Classify(err) {
		case cluster.ConnectFailure:
			cs.stats.ConnectFailures.Inc()
			return resilience.ConnectFailure, 0, -1
		case cluster.Timeout:
			cs.stats.Timeouts.Inc()
			return resilience.Timeout, 0, -1
		case cluster.Overflow:
			return resilience.Overflow, 0, -1
		}
		cs.stats.Resets.Inc()
		return resilience.Reset, 0, -1
	}
	// Outlier detection sees a gRPC call's status as the HTTP status it
	// maps to (as Envoy's router reports it): a trailers-only answer now, a
	// streamed one when its trailers arrive (writeH2).
	if h.grpc && resp.StatusCode == http.StatusOK {
		if v := headerValue(resp.Header, "Grpc-Status"); v != "" {
			code, _ := strconv.Atoi(v)
			ep.Report(grpcToHTTP(code), nil)
		} else {
			h.reportTo = ep
		}
	} else {
		ep.Report(resp.StatusCode, nil)
	}
	// The stream keeps the try's context (its end resets the upstream).
	prevCancel := h.cancel
	h.cancel = func(cause error) { cancel(cause); prevCancel(cause) }
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bodyReply {
		_ = resp.Body.Close()
		return resilience.NoFailure, 0, -1
	}
	h.upstream = resp
	rh := &s.Response.Header
	s.Response.Reset()
	rh.SetNoDefaultContentType(true)
	rh.DisableNormalizing()
	s.Response.SetStatusCode(resp.StatusCode)
	var kb [64]byte
	for k, vs := range resp.Header {
		lk := appendLower(kb[:0], k)
		for _, v := range vs {
			rh.AddBytesK(lk, v)
		}
	}
	grpcStatus := -1
	if v := headerValue(resp.Header, "Grpc-Status"); v != "" {
		grpcStatus, _ = strconv.Atoi(v)
	}
	return resilience.NoFailure, resp.StatusCode, grpcStatus
}

// outbound builds the upstream request from the stream's headers as the
// filters and the route left them, with the body streaming from the
// downstream (replayed on a retry). It builds the request by hand: the
// target is kept as sent (no url.Parse). To an HTTP/2 upstream header
// names go as the stream has them (net/http's HTTP/2 client lowercases
// them anyway, and matches its own headers in any case); net/http's
// HTTP/1.1 writer finds User-Agent and Content-Length only by their
// canonical names, so for it names are canonicalized.
func (h *h2Exchange) outbound(ctx context.Context, s *filter.Stream, callDeadline time.Time, h2up bool) (*http.Request, error) {
	var body io.ReadCloser = http.NoBody
	if h.body != nil {
		body = h.body.reader()
	}
	target := string(s.Request.RequestURI())
	u := &url.URL{Scheme: "http", Host: "upstream"}
	path, query, hasQuery := strings.Cut(target, "?")
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		pu, err := url.ParseRequestURI(target)
		if err != nil {
			return nil, err
		}
		u.Path, u.RawPath, u.RawQuery, u.ForceQuery = pu.Path, pu.RawPath, pu.RawQuery, pu.ForceQuery
	} else {
		u.Opaque, u.RawQuery, u.ForceQuery = path, query, hasQuery && query == ""
	}
	out := &http.Request{
		Method:     string(s.Request.Header.Method()),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Body:       body,
		Host:       string(s.Request.Header.Host()),
	}
	out.ContentLength = h.r.ContentLength
	if body == http.NoBody {
		out.ContentLength = 0
	} else if h.filteredBody {
		out.ContentLength = -1 // body filters may change its length
	}
	if len(h.r.Trailer) > 0 {
		out.Trailer = h.r.Trailer
	}
	if h2up {
		// weft's HTTP/2 client encodes the fields straight from the
		// stream's header: no http.Header in between.
		f := &h2Fields{h: &s.Request.Header}
		if !callDeadline.IsZero() {
			f.timeout = formatGRPCTimeout(time.Until(callDeadline))
		}
		return out.WithContext(h2client.WithFields(ctx, f)), nil
	}
	out = out.WithContext(ctx)
	out.Header = make(http.Header, s.Request.Header.Len())
	for k, v := range s.Request.Header.All() {
		name := string(k)
		switch strings.ToLower(name) {
		case "content-length":
			if h.filteredBody {
				continue
			}
		case "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		case "te":
			if !strings.EqualFold(string(v), "trailers") {
				continue // the only TE HTTP/2 allows
			}
		case "grpc-timeout":
			if !callDeadline.IsZero() {
				continue // replaced below by what is left of it
			}
		}
		if !h2up {
			name = http.CanonicalHeaderKey(name)
		}
		out.Header[name] = append(out.Header[name], string(v))
	}
	if !callDeadline.IsZero() {
		name := "grpc-timeout"
		if !h2up {
			name = "Grpc-Timeout"
		}
		out.Header[name] = []string{formatGRPCTimeout(time.Until(callDeadline))}
	}
	return out, nil
}

// h2Fields are the upstream request's header fields for weft's HTTP/2
// client, read from the stream's header with outbound's rules (the client
// drops the connection-specific ones and Content-Length itself).
type h2Fields struct {
	h       *fasthttp.RequestHeader
	timeout string // grpc-timeout in place of the client's ("": as sent)
}

var grpcTimeoutName = []byte("grpc-timeout")

func (f *h2Fields) VisitFields(emit func(name, value []byte)) {
	for k, v := range f.h.All() {
		if len(k) == len("grpc-timeout") && f.timeout != "" && asciiEqualFold(k, "grpc-timeout") {
			continue // replaced below by what is left of it
		}
		if len(k) == 2 && asciiEqualFold(k, "te") && !asciiEqualFold(v, "trailers") {
			continue // the only TE HTTP/2 allows
		}
		emit(k, v)
	}
	if f.timeout != "" {
		var vb [16]byte
		emit(grpcTimeoutName, append(vb[:0], f.timeout...))
	}
}

// writeH2 writes the stream's answer: the upstream's, streamed with its
// trailers, or the local one (as a trailers-only gRPC answer on a gRPC
// request). It reports whether the stream must be reset because the
// upstream's answer or the client broke midway.
func (rl *runningListener) writeH2(x *exchange) (abort bool) {
	s, h := &x.stream, x.h2
	w := h.w
	if h.upstream == nil {
		wh := w.Header()
		if h.grpc && len(s.Response.Header.Peek("grpc-status")) == 0 {
			code := grpcStatusFor(s.Response.StatusCode(), s.ResponseFlags)
			msg := strings.TrimSpace(string(s.Response.Body()))
			for k, v := range s.Response.Header.All() {
				if lk := strings.ToLower(string(k)); lk != "content-type" && lk != "content-length" {
					wh.Add(lk, string(v))
				}
			}
			wh.Set("content-type", "application/grpc")
			wh.Set("grpc-status", strconv.Itoa(code))
			if msg != "" {
				wh.Set("grpc-message", grpcPercentEncode(msg))
			}
			s.GRPCStatus = code
			w.WriteHeader(http.StatusOK)
			return false
		}
		copyResponseHeaders(wh, &s.Response.Header)
		body := s.Response.Body()
		wh.Set("content-length", strconv.Itoa(len(body)))
		w.WriteHeader(s.Response.StatusCode())
		n, _ := w.Write(body)
		h.out += int64(n)
		if v := s.Response.Header.Peek("grpc-status"); len(v) > 0 {
			s.GRPCStatus, _ = strconv.Atoi(string(v))
		}
		return false
	}
	up := h.upstream
	filtered := x.filtered()
	trailersOnly := false
	if v := headerValue(up.Header, "Grpc-Status"); v != "" {
		// A trailers-only answer: one HEADERS frame that ends the stream,
		// which is what net/http sends when nothing was flushed or written.
		s.GRPCStatus, _ = strconv.Atoi(v)
		trailersOnly = true
	}
	fw, direct := w.(fieldWriter)
	direct = direct && !trailersOnly
	var wh http.Header
	if direct {
		// weft's HTTP/2 server: the headers go now (a stream may send its
		// body much later), encoded from the stream's header as it is.
		err := fw.WriteHeaderFields(s.Response.StatusCode(), func(emit func(name, value []byte)) {
			hasLength := false
			for k, v := range s.Response.Header.All() {
				if hopHeader(k) {
					continue
				}
				if len(k) == len("content-length") && asciiEqualFold(k, "content-length") {
					if filtered || hasLength {
						continue // body filters may change the length; one field
					}
					hasLength = true
				}
				emit(k, v)
			}
			if !filtered && !hasLength && up.ContentLength >= 0 {
				var nb [20]byte
				emit(contentLengthName, strconv.AppendInt(nb[:0], up.ContentLength, 10))
			}
		})
		if err != nil {
			h.cancel(err) // the client went away: reset the upstream
			s.ResponseFlags = "DC"
			return true
		}
	} else {
		wh = w.Header()
		copyResponseHeaders(wh, &s.Response.Header)
		if filtered {
			wh.Del("content-length") // body filters may change its length
		} else if up.ContentLength >= 0 && len(s.Response.Header.Peek("content-length")) == 0 {
			wh.Set("content-length", strconv.FormatInt(up.ContentLength, 10))
		}
		w.WriteHeader(s.Response.StatusCode())
	}
	rc := http.NewResponseController(w)
	if !trailersOnly && !direct {
		_ = rc.Flush() // the headers go now: a stream may send its body much later
	}
	buf := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(buf)
	for {
		n, err := up.Body.Read(*buf)
		if err != nil && err != io.EOF {
			// The upstream reset the stream or broke: reset the client's.
			s.ResponseFlags = "UPE"
			return true
		}
		eof := err == io.EOF
		data := (*buf)[:n]
		if filtered && (n > 0 || eof) {
			var st filter.Status
			data, st = h.encodeData(x, data, eof, eof && len(up.Trailer) > 0)
			if st == filter.LocalReply {
				// The answer has begun: a filter's reply can only reset it.
				s.ResponseFlags = "LR"
				return true
			}
		}
		if len(data) > 0 {
			if _, werr := w.Write(data); werr != nil {
				h.cancel(werr) // the client went away: reset the upstream
				s.ResponseFlags = "DC"
				return true
			}
			h.out += int64(len(data))
			_ = rc.Flush()
		}
		if eof {
			break
		}
	}
	if len(up.Trailer) > 0 {
		t := &fasthttp.ResponseHeader{}
		t.SetNoDefaultContentType(true)
		t.DisableNormalizing()
		var kb [64]byte
		for k, vs := range up.Trailer {
			lk := appendLower(kb[:0], k)
			for _, v := range vs {
				t.AddBytesK(lk, v)
			}
		}
		s.ResponseTrailers = t
		if filtered {
			h.mu.Lock()
			st := x.chain.EncodeTrailers(s)
			h.mu.Unlock()
			if st == filter.LocalReply {
				s.ResponseFlags = "LR"
				return true
			}
		}
		if direct {
			_ = fw.WriteTrailerFields(func(emit func(name, value []byte)) {
				for k, v := range t.All() {
					emit(k, v)
				}
			})
		} else {
			for k, v := range t.All() {
				key := trailerKey(k)
				wh[key] = append(wh[key], string(v))
			}
		}
		if v := t.Peek("grpc-status"); len(v) > 0 {
			s.GRPCStatus, _ = strconv.Atoi(string(v))
		}
	}
	if h.reportTo != nil && s.GRPCStatus >= 0 {
		h.reportTo.Report(grpcToHTTP(s.GRPCStatus), nil)
		h.reportTo = nil
	}
	return false
}

// fieldWriter is what weft's HTTP/2 server's ResponseWriter offers
// beyond http.ResponseWriter (listener/h2server.go): an answer's headers
// and trailers encoded straight from the stream's own header, with no
// http.Header in between. Writers that translate the answer (gRPC-Web's)
// do not have it.
type fieldWriter interface {
	WriteHeaderFields(status int, visit func(emit func(name, value []byte))) error
	WriteTrailerFields(visit func(emit func(name, value []byte))) error
}

var contentLengthName = []byte("content-length")

// encodeData runs the response body filters on one chunk and returns what
// to send now. last is the body's end; trailers say trailers follow (the
// filters then see endOfStream on the trailers, not here).
func (h *h2Exchange) encodeData(x *exchange, chunk []byte, last, trailers bool) ([]byte, filter.Status) {
	s := &x.stream
	h.mu.Lock()
	defer h.mu.Unlock()
	s.Response.SetBodyRaw(chunk)
	st := x.chain.EncodeData(s, last && !trailers)
	if st == filter.StopAndBuffer && last {
		// The body ends here: what a filter held goes now.
		s.Response.SetBodyRaw(nil)
		st = x.chain.EncodeData(s, true)
	}
	switch st {
	case filter.LocalReply:
		return nil, st
	case filter.StopAndBuffer:
		return nil, st
	}
	return s.Response.Body(), filter.Continue
}

// errFilterReply ends an upstream request whose body a filter refused.
var errFilterReply = errors.New("a request body filter answered locally")

// filteredBody passes a streamed request body through the stream's body
// (and trailers) filters on its way upstream.
type filteredBody struct {
	x    *exchange
	src  io.ReadCloser
	buf  []byte
	out  []byte
	done error
}

func (b *filteredBody) Read(p []byte) (int, error) {
	x := b.x
	h, s := x.h2, &x.stream
	for len(b.out) == 0 {
		if b.done != nil {
			return 0, b.done
		}
		if b.buf == nil {
			b.buf = make([]byte, 16<<10)
		}
		n, err := b.src.Read(b.buf)
		if err != nil && err != io.EOF {
			return 0, err
		}
		eof := err == io.EOF
		trailers := eof && len(h.r.Trailer) > 0
		h.mu.Lock()
		if h.finished {
			h.mu.Unlock()
			return 0, errFilterReply
		}
		s.Request.SetBodyRaw(b.buf[:n])
		st := x.chain.DecodeData(s, eof && !trailers)
		if st == filter.StopAndBuffer && trailers {
			s.Request.SetBodyRaw(nil)
			st = x.chain.DecodeData(s, true)
		}
		switch st {
		case filter.Continue:
			b.out = append(b.out[:0], s.Request.Body()...)
		case filter.LocalReply:
			h.bodyReply = true
			h.mu.Unlock()
			b.done = errFilterReply
			h.stop(errFilterReply)
			return 0, errFilterReply
		}
		if trailers {
			t := &fasthttp.ResponseHeader{}
			t.SetNoDefaultContentType(true)
			t.DisableNormalizing()
			for k, vs := range h.r.Trailer {
				for _, v := range vs {
					t.Add(strings.ToLower(k), v)
				}
			}
			s.RequestTrailers = t
			if x.chain.DecodeTrailers(s) == filter.LocalReply {
				h.bodyReply = true
				h.mu.Unlock()
				b.done = errFilterReply
				h.stop(errFilterReply)
				return 0, errFilterReply
			}
			// What goes upstream is the trailers as the filters left them.
			for k := range h.r.Trailer {
				delete(h.r.Trailer, k)
			}
			for k, v := range t.All() {
				h.r.Trailer.Add(string(k), string(v))
			}
		}
		h.mu.Unlock()
		if eof {
			b.done = io.EOF
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *filteredBody) Close() error { return b.src.Close() }

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyResponseHeaders copies a response's headers to an HTTP/2 answer,
// minus what HTTP/2 forbids (connection-specific fields).
func copyResponseHeaders(dst http.Header, src *fasthttp.ResponseHeader) {
	for k, v := range src.All() {
		if hopHeader(k) {
			continue
		}
		key := httpheader.CanonicalKeyBytes(k)
		dst[key] = append(dst[key], string(v))
	}
}

// hopHeader reports whether k (any case) is a connection-specific header
// no HTTP/2 answer carries.
func hopHeader(k []byte) bool {
	switch len(k) {
	case 7:
		return asciiEqualFold(k, "upgrade") || asciiEqualFold(k, "trailer")
	case 10:
		return asciiEqualFold(k, "connection") || asciiEqualFold(k, "keep-alive")
	case 16:
		return asciiEqualFold(k, "proxy-connection")
	case 17:
		return asciiEqualFold(k, "transfer-encoding")
	}
	return false
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// trailerKey is the response writer's key that sends k as a trailer.
func trailerKey(k []byte) string {
	switch string(k) {
	case "grpc-status":
		return http.TrailerPrefix + "Grpc-Status"
	case "grpc-message":
		return http.TrailerPrefix + "Grpc-Message"
	}
	return http.TrailerPrefix + http.CanonicalHeaderKey(string(k))
}

// headerValue is h's first value under the canonical key, without
// canonicalizing it again.
func headerValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// appendLower appends s in lower case to b.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}
