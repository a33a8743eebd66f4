package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// Defaults for zero limits.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxBodyBytes   = 4 << 20
	DefaultReadTimeout    = 30 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	DefaultIdleTimeout    = 90 * time.Second
	DefaultMaxConnections = 10000
)

// Options configure one listener.
type Options struct {
	Name    string
	Address string
	Limits  config.Limits
	Handler fasthttp.RequestHandler
	// TLS, when set, makes the listener speak TLS with this config.
	TLS *tls.Config
	// TLSMode is TLSStrict (default: every connection is TLS) or
	// TLSPermissive (TLS and plaintext on the same port).
	TLSMode string
	// TLSSelect, when set, is asked per connection for the TLS mode and
	// config (it wins over TLS and TLSMode): a config swap can turn TLS on
	// or off without rebinding.
	TLSSelect TLSSelector
	// RequestLimits, when set, is read for every request: the body size
	// and read/write timeouts it gives apply without rebinding, so a
	// config swap can change them. (Header size, connection count and idle
	// timeout are fixed when the listener is bound.)
	RequestLimits func() config.Limits
	// H2, when set (and its settings do not disable it), serves HTTP/2 on
	// the same port: h2c by preface or Upgrade, h2 by ALPN over TLS.
	H2 *H2Options
	// Rejects, when set, counts the requests refused before the handler
	// (strict.go); one value may serve every listener.
	Rejects *Rejects
	Logger  *zap.Logger
}

// Listener is a bound socket and the fasthttp server behind it.
type Listener struct {
	name    string
	ln      net.Listener
	srv     *fasthttp.Server
	h2      *h2codec // nil: HTTP/1.1 only
	log     *zap.Logger
	served  chan struct{}
	started atomic.Bool
}

// Listen binds the address (so a busy port fails before any swap) and
// prepares the server. Serve starts it.
func Listen(o Options) (*Listener, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", o.Name, err)
	}
	h2on := o.H2 != nil && o.H2.Handler != nil && !o.H2.Settings.Disabled
	rej := o.Rejects
	if rej == nil {
		rej = &Rejects{}
	}
	sel := o.TLSSelect
	if sel == nil && o.TLS != nil {
		mode, cfg := o.TLSMode, o.TLS
		if mode == "" {
			mode = TLSStrict
		}
		sel = func() (string, *tls.Config) { return mode, cfg }
	}
	if sel != nil {
		if h2on {
			sel = alpnSelect(sel)
		}
		ln = WrapTLS(ln, sel)
	}
	lim := o.Limits
	handler := o.Handler
	var codec *h2codec
	if h2on {
		h2o := *o.H2
		h2o.Handler = headerCountGuard(h2o.Handler, o.Name, o.Logger, rej, o.RequestLimits, o.Limits)
		codec = newH2Codec(&h2o, lim, o.Logger)
		ln = newH2Listener(ln, codec, orDur(lim.ReadTimeout.D(), DefaultReadTimeout))
		next := handler
		handler = func(ctx *fasthttp.RequestCtx) {
			if !codec.h2cUpgrade(ctx) {
				next(ctx)
			}
		}
	}
	srv := &fasthttp.Server{
		Handler:            guard(handler, o.Name, o.Logger, rej, o.RequestLimits, o.Limits),
		Name:               "weft",
		ReadBufferSize:     orInt(lim.MaxHeaderBytes, DefaultMaxHeaderBytes),
		MaxRequestBodySize: orInt(lim.MaxBodyBytes, DefaultMaxBodyBytes),
		// The handler gets a request once its headers are read and the
		// body streams from the connection as the proxy forwards it (the
		// proxy enforces max_body_bytes on it).
		StreamRequestBody:             true,
		ReadTimeout:                   orDur(lim.ReadTimeout.D(), DefaultReadTimeout),
		WriteTimeout:                  orDur(lim.WriteTimeout.D(), DefaultWriteTimeout),
		IdleTimeout:                   orDur(lim.IdleTimeout.D(), DefaultIdleTimeout),
		Concurrency:                   orInt(lim.MaxConnections, DefaultMaxConnections),
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		SecureErrorLogMessage:         true,
		Logger:                        zapPrintf{o.Logger},
		ErrorHandler:                  errorHandler(o.Name, o.Logger, rej),
		HeaderReceived:                requestConfig(o.RequestLimits, o.Limits),
		TCPKeepalive:                  true,
		DisableHeaderNamesNormalizing: false,
	}
	// Every HTTP/1.1 connection's bytes pass the framer (h1frame.go) on
	// their way to fasthttp; HTTP/2 ones were taken off above.
	ln = strictListener{Listener: ln, maxHead: orInt(lim.MaxHeaderBytes, DefaultMaxHeaderBytes)}
	return &Listener{name: o.Name, ln: ln, srv: srv, h2: codec, log: o.Logger, served: make(chan struct{})}, nil
}

// Addr is the bound address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Name is the listener's configured name.
func (l *Listener) Name() string { return l.name }

// Serve serves until Shutdown. It returns nil after a graceful shutdown.
func (l *Listener) Serve() error {
	l.started.Store(true)
	defer close(l.served)
	err := l.srv.Serve(l.ln)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("listener %q: %w", l.name, err)
	}
	return nil
}

// Shutdown stops accepting, waits for in-flight requests to finish (until
// ctx ends), then closes idle connections.
func (l *Listener) Shutdown(ctx context.Context) error {
	h2done := make(chan struct{})
	go func() {
		defer close(h2done)
		if l.h2 != nil {
			l.h2.shutdown(ctx) // GOAWAY, then in-flight streams finish
		}
	}()
	defer func() { <-h2done }()
	err := l.srv.ShutdownWithContext(ctx)
	// Close the socket too: if Serve had not started yet when Shutdown
	// ran, it would otherwise start afterwards and accept forever.
	_ = l.ln.Close()
	if !l.started.Load() {
		return err // never served (a config refused before its swap): nothing to wait for
	}
	select {
	case <-l.served:
	case <-ctx.Done():
	}
	return err
}

// errorHandler answers requests fasthttp could not parse. They never reach
// the handler, so they never reach an upstream.
func errorHandler(name string, log *zap.Logger, rej *Rejects) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		var small *fasthttp.ErrSmallBuffer
		var te interface{ Timeout() bool }
		why, status, msg := RejectParse, fasthttp.StatusBadRequest, "bad request"
		switch {
		case errors.As(err, &small):
			why, status, msg = RejectHeaderTooLarge, fasthttp.StatusRequestHeaderFieldsTooLarge, "request header fields too large"
		case errors.Is(err, errBareLF):
			why, status, msg = RejectBareLF, fasthttp.StatusBadRequest, rejectMessages[RejectBareLF]
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			why, status, msg = RejectBodyTooLarge, fasthttp.StatusRequestEntityTooLarge, "request body too large"
		case errors.As(err, &te) && te.Timeout():
			why, status, msg = RejectTimeout, fasthttp.StatusRequestTimeout, "request timeout"
		}
		rej.add(why, name, log, ctx.RemoteAddr().String)
		ctx.Error(msg, status)
		ctx.SetConnectionClose()
	}
}

func orInt(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func orDur(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}

type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.l.Debug("fasthttp", zap.String("msg", fmt.Sprintf(format, args...)))
}

// guard refuses what fasthttp parses leniently but a proxy must not pass
// on (strict.go). max_headers_count is read per request, as the body limit
// is, so a config swap changes it without rebinding.
func guard(next fasthttp.RequestHandler, name string, log *zap.Logger, rej *Rejects, limits func() config.Limits, bound config.Limits) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		l := bound
		if limits != nil {
			l = limits()
		}
		if status, why, ok := checkHead(&ctx.Request.Header, orInt(l.MaxHeadersCount, DefaultMaxHeadersCount)); !ok {
			rej.add(why, name, log, ctx.RemoteAddr().String)
			ctx.Error(rejectMessages[why], status)
			ctx.SetConnectionClose()
			return
		}
		// The request goes upstream as it came: fasthttp would otherwise
		// write a Content-Type the client never sent on any request with a
		// body (application/octet-stream).
		ctx.Request.Header.SetNoDefaultContentType(true)
		next(ctx)
	}
}

// rejectMessages are the bodies of the refusals guard answers.
var rejectMessages = [numReasons]string{
	RejectVersion:     "HTTP version not supported: use HTTP/1.1",
	RejectHeaderName:  "invalid header field name",
	RejectHeaderCount: "too many header fields",
	RejectObsFold:     "obsolete line folding in a header field",
	RejectBareLF:      "header line not ended by CRLF",
	RejectFraming:     "both Content-Length and Transfer-Encoding",
	RejectTarget:      "userinfo in the request target",
}

// requestConfig turns per-request limits into fasthttp's per-request config.
// Values equal to the ones the server was built with are left zero, so
// fasthttp does not set an extra deadline per request for nothing.
func requestConfig(limits func() config.Limits, bound config.Limits) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	if limits == nil {
		return nil
	}
	bRead, bWrite := orDur(bound.ReadTimeout.D(), DefaultReadTimeout), orDur(bound.WriteTimeout.D(), DefaultWriteTimeout)
	bBody := orInt(bound.MaxBodyBytes, DefaultMaxBodyBytes)
	return func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
		l := limits()
		var rc fasthttp.RequestConfig
		if d := orDur(l.ReadTimeout.D(), DefaultReadTimeout); d != bRead {
			rc.ReadTimeout = d
		}
		if d := orDur(l.WriteTimeout.D(), DefaultWriteTimeout); d != bWrite {
			rc.WriteTimeout = d
		}
		if n := orInt(l.MaxBodyBytes, DefaultMaxBodyBytes); n != bBody {
			rc.MaxRequestBodySize = n
		}
		return rc
	}
}

// FixedLimitsChanged reports, for a listener kept across a config swap,
// which limits cannot change without rebinding it ("" when none did).
func FixedLimitsChanged(was, now config.Limits) string {
	switch {
	case orInt(was.MaxHeaderBytes, DefaultMaxHeaderBytes) != orInt(now.MaxHeaderBytes, DefaultMaxHeaderBytes):
		return "max_header_bytes"
	case orInt(was.MaxConnections, DefaultMaxConnections) != orInt(now.MaxConnections, DefaultMaxConnections):
		return "max_connections"
	case orDur(was.IdleTimeout.D(), DefaultIdleTimeout) != orDur(now.IdleTimeout.D(), DefaultIdleTimeout):
		return "idle_timeout"
	}
	return ""
}
