package refproxy

import (
	"context"
	"net"

	"github.com/valyala/fasthttp"
)

// serveFasthttp is fasthttp's server handing each request to its
// HostClient: weft's two building blocks and nothing else.
func serveFasthttp(ctx context.Context, listen, upstream string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	hc := &fasthttp.HostClient{Addr: upstream, MaxConns: 4096}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Request.Header.Del("Connection")
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("upstream: "+err.Error(), fasthttp.StatusBadGateway)
			}
		},
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
	}
	if ready != nil {
		ready(ln.Addr())
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			_ = srv.Shutdown()
		case <-stop:
		}
	}()
	err = srv.Serve(ln)
	close(stop)
	<-done
	hc.CloseIdleConnections()
	return err
}
