package proxy

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/cluster"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/route"
	"github.com/weftmesh/weft/proxy/telemetry"
	"github.com/weftmesh/weft/proxy/tracing"
)

// exchange is the per-request state, pooled so steady-state requests
// allocate nothing of their own.
type exchange struct {
	stream filter.Stream
	chain  filter.Chain
	idBuf  [36]byte
	xff    []byte
	entry  telemetry.Entry
	stats  *telemetry.RouteStats
	span   *tracing.Span // nil when tracing is off
	h2     *h2Exchange   // an HTTP/2 stream's state (nil for HTTP/1.1)
	// up is an HTTP/1.1 upstream answer's body still to read; h1 passes it
	// to the client (stream_h1.go) with scratch as the stream's Response
	// once the headers have gone.
	up      cluster.ResponseBody
	h1      h1Body
	scratch fasthttp.Response
	// in is an HTTP/1.1 request body streaming from the client
	// (stream_h1_request.go); in.active is false when the body is whole.
	in h1RequestBody
	// closeDown closes the client's connection after this answer.
	closeDown bool
	// mirror is the mirror of a streamed request body, sent when the body
	// has been read to its end (nil: none).
	mirror *mirrorCopy
}

var exchangePool = sync.Pool{New: func() any { return &exchange{xff: make([]byte, 0, 64)} }}

func acquireExchange() *exchange { return exchangePool.Get().(*exchange) }

func releaseExchange(x *exchange) {
	x.chain.Reset()
	x.stream = filter.Stream{}
	x.stats = nil
	x.span = nil
	x.h2 = nil
	x.up = nil
	x.scratch.Reset()
	x.in.reset()
	x.closeDown = false
	x.mirror = nil
	exchangePool.Put(x)
}

// serve is the fasthttp handler of one listener: one request's whole path.
func (rl *runningListener) serve(ctx *fasthttp.RequestCtx) {
	ls := rl.state.Load()
	if ls.grpcWeb != nil && rl.serveGRPCWebH1(ctx, ls) {
		return // a gRPC-Web call goes the HTTP/2 stream path (grpcweb_serve.go)
	}
	x := acquireExchange()
	ls.active.Inc()

	req, resp := &ctx.Request, &ctx.Response
	s := &x.stream
	s.Request, s.Response = req, resp
	s.StartTime = ctx.Time() // when fasthttp began the request: no extra clock read
	s.ConnID = ctx.ConnID()
	s.Source, s.Destination = ctx.RemoteAddr(), ctx.LocalAddr()
	s.TLS = connTLS(ctx)
	s.GRPCStatus = -1
	s.Limits = ls.filterLimits()
	s.Listener, s.Direction = ls.name, ls.direction
	ls.stampMetadata(s)
	s.NodeID, s.NodeMetadata = ls.snap.cfg.Node.ID, ls.snap.cfg.Node.Metadata
	// RFC 9112 §3.2.2: with an absolute-form target the URI's authority is
	// the host; routing and the upstream must agree on it.
	if u := req.URI().Host(); len(u) > 0 && !bytes.EqualFold(u, req.Header.Host()) {
		req.Header.SetHostBytes(u)
	}
	s.ID = setRequestID(&req.Header, &x.idBuf)
	x.xff = setForwarded(&req.Header, s.Source, ctx.IsTLS(), x.xff)
	upgrade := isUpgrade(&req.Header)
	stripHopByHopRequest(&req.Header, upgrade)
	if tr := ls.snap.tracer; tr != nil {
		x.span = tr.Start(&req.Header, ls.direction == "inbound", s.StartTime)
		s.Trace = x.span
	}

	if ls.sec.authz != nil {
		ls.sec.authz.StripRequestPrincipal(&req.Header)
	}
	for _, f := range ls.filters {
		x.chain.Add(f, s)
	}
	if rl.startRequestBody(ctx, ls, x) && x.chain.DecodeFrom(s, 0) == filter.Continue && ls.authorize(s) {
		rl.route(ctx, ls, x, upgrade)
	}
	if x.in.failed(ls, rl.p.rejects, rl.p.log, ctx) {
		// The request body, not the upstream, ended the exchange.
		x.closeUp()
	}
	// A body not read to its end (a local answer, a refusal, an upstream
	// that answered without it): close rather than read it all to reach
	// the connection's next request.
	x.closeDown = x.closeDown || !x.in.finished()
	if !ctx.Hijacked() {
		if x.up != nil {
			s.ResponseBodyStreamed = true // header callbacks: a body follows
		}
		if x.chain.Encode(s) == filter.LocalReply && x.up != nil {
			// A response filter answered instead of the upstream.
			_ = x.up.Close()
			x.up = nil
			s.ResponseBodyStreamed = false
		}
		stripHopByHopResponse(&resp.Header)
		if x.closeDown {
			ctx.SetConnectionClose()
		}
		if x.up != nil && rl.streamBody(ctx, ls, x) {
			return // the body streams: its end finishes the exchange
		}
	}
	rl.finish(ctx, ls, x)
	releaseExchange(x)
	ls.active.Dec()
}

// route matches the request and acts on the route. ctx is nil for an
// HTTP/2 stream (x.h2).
func (rl *runningListener) route(ctx *fasthttp.RequestCtx, ls *listenerState, x *exchange, upgrade bool) {
	s := &x.stream
	r := ls.table.Match(s.Request)
	if r == nil {
		s.SendLocalReply(fasthttp.StatusNotFound, []byte("no route\n"), nil)
		s.ResponseFlags = "NR"
		return
	}
	rs := ls.routes[r]
	s.RouteName, s.RouteMetadata, s.ClusterMetadata = r.Name, r.Metadata, rs.clusterMetadata
	x.stats = rs.noCluster
	nListener := x.chain.Len()
	for _, f := range rs.filters {
		x.chain.Add(f, s)
	}
	if x.chain.DecodeFrom(s, nListener) == filter.Continue {
		switch r.Kind {
		case route.Direct:
			r.WriteDirect(s.Response)
		case route.Redirect:
			r.WriteRedirect(s.Request, s.Response)
		default:
			t := r.PickCluster(rand.Uint64())
			x.stats = rs.stats[slotOf(r, t)]
			cs := ls.snap.clusters[t.Index]
			s.ClusterName, s.ClusterMetadata, s.HostMetadata = cs.name, cs.metadata, cs.hostMetadata
			r.ApplyRequest(s.Request)
			if r.Mirror != nil {
				if s.RequestBodyStreamed {
					// The copy takes the body as the tries read it, and
					// goes once it ended (replayBody).
					x.mirror = rl.p.startMirror(ls.snap, r, s.Request)
					if x.mirror != nil && x.filtered() {
						x.mirror.want = -1 // filters may change the length: wait for the end
					}
				} else {
					rl.p.mirror(ls.snap, r, s.Request)
				}
			}
			if x.h2 != nil {
				rl.p.forwardStream(x, cs, r, rs)
			} else if upgrade {
				rl.p.upgrade(ctx, cs, s)
				if ctx.Hijacked() {
					return // the upstream's 101 went to the client as it was
				}
			} else {
				rl.p.forward(ctx, cs, r, rs, s, &x.up, x.streamedBody())
			}
			if x.mirror != nil {
				x.mirror.drop() // unless the body ended and it went
				x.mirror = nil
			}
		}
	}
	// The route's response edits apply to whatever answers: the upstream,
	// a direct response, a redirect or a filter's local reply.
	r.ApplyResponse(s.Response)
}

// finish records metrics and the access log, then ends the filters. ctx
// is nil for an HTTP/2 stream.
func (rl *runningListener) finish(ctx *fasthttp.RequestCtx, ls *listenerState, x *exchange) {
	s := &x.stream
	status := s.Response.StatusCode()
	d := time.Since(s.StartTime)
	if x.h2 != nil {
		s.ResponseBytesSent = x.h2.out
	} else if !s.ResponseBodyStreamed {
		s.ResponseBytesSent = int64(len(s.Response.Body()))
	}
	if x.stats != nil {
		x.stats.Record(status, d)
		if s.GRPCStatus >= 0 {
			x.stats.RecordGRPC(s.GRPCStatus)
		}
	}
	if ls.accessLog != nil {
		e := &x.entry
		*e = telemetry.Entry{
			Start: s.StartTime, Method: s.Request.Header.Method(), Path: s.Request.URI().PathOriginal(),
			Authority: s.Request.Host(), Protocol: s.Request.Header.Protocol(), Status: status,
			ResponseFlags: s.ResponseFlags, BytesReceived: x.bytesReceived(), BytesSent: int(s.ResponseBytesSent),
			Duration: d, UpstreamHost: s.UpstreamAddr, Cluster: s.ClusterName, Route: s.RouteName,
			RequestID: s.ID, UserAgent: s.Request.Header.UserAgent(), XForwardedFor: s.Request.Header.Peek("X-Forwarded-For"),
			Remote: s.Source.String(), Retries: s.Retries, TraceID: traceID(x, s),
		}
		if s.TLS != nil {
			e.PeerPrincipal = s.TLS.PeerURISAN
		}
		if x.h2 != nil {
			e.BytesReceived = int(x.h2.bodyIn())
			e.Protocol = protoHTTP2
		}
		ls.accessLog.Log(e)
	}
	x.chain.Finish(s)
	if x.span != nil {
		x.span.End(s, s.StartTime.Add(d))
		x.span = nil
	}
}

// bytesReceived is the request body's size as the access log counts it:
// what was read of a streamed body, the body otherwise.
func (x *exchange) bytesReceived() int {
	if x.in.active {
		return int(x.in.read)
	}
	return len(x.stream.Request.Body())
}

// streamedBody is the HTTP/1.1 request body streaming from the client,
// nil when the body is whole.
func (x *exchange) streamedBody() *h1RequestBody {
	if x.in.active {
		return &x.in
	}
	return nil
}

// closeUp drops an upstream answer that will not be sent.
func (x *exchange) closeUp() {
	if x.up != nil {
		_ = x.up.Close()
		x.up = nil
	}
}

// slotOf is t's position among r's targets.
func slotOf(r *route.Route, t *route.Target) int {
	for i := range r.Clusters {
		if &r.Clusters[i] == t {
			return i
		}
	}
	return 0
}
