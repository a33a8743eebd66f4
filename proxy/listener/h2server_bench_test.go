package listener

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// BenchmarkH2Server is a gRPC-shaped exchange (a 64-byte request body,
// a 64-byte answer with trailers) through each HTTP/2 server the
// listener has, in one run, 64 streams in flight on one connection; the
// client (x/net's) is the same for both, so the difference is the
// server's. The CPU of the whole process (client and server) is what
// ns/op measures.
func BenchmarkH2Server(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 64)
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Header().Set("content-type", "application/grpc")
		w.WriteHeader(200)
		_, _ = w.Write(body)
		w.(http.Flusher).Flush()
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	})
	for _, server := range []string{config.H2ServerWeft, config.H2ServerXNet} {
		b.Run(server, func(b *testing.B) {
			l, err := Listen(Options{Name: "b", Address: "127.0.0.1:0", Handler: func(*fasthttp.RequestCtx) {},
				H2: &H2Options{Handler: echo, Settings: config.HTTP2{Server: server}}})
			if err != nil {
				b.Fatal(err)
			}
			go l.Serve()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = l.Shutdown(ctx)
			}()
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true) // prior knowledge
			defer tr.CloseIdleConnections()
			url := "http://" + l.Addr().String() + "/grpc.testing.TestService/UnaryCall"
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", url, bytes.NewReader(payload))
					req.Header.Set("content-type", "application/grpc")
					req.Header.Set("te", "trailers")
					resp, err := tr.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.Trailer.Get("Grpc-Status") != "0" {
						b.Error("no grpc-status trailer")
						return
					}
				}
			})
		})
	}
}
