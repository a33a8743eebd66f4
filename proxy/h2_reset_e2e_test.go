package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

const h2ResetConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    protocol: http2
    endpoints: [{address: "{{up}}"}]
`

// A client's RST_STREAM in the middle of a stream reaches the upstream:
// weft's HTTP/2 server ends the stream's context, and the upstream
// request made with it is reset, so the upstream's handler sees its
// request cancelled (not left to run to its own end).
func TestH2ClientResetReachesUpstream(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	srv := &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(30 * time.Second):
			ended <- nil
		}
	})}
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, url := startProxy(t, h2ResetConfig, map[string]string{"up": ln.Addr().String()})

	r := dialRawH2(t, strings.TrimPrefix(url, "http://"), nil)
	r.must(r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block("/stream"), EndHeaders: true}))
	r.must(r.fr.WriteData(1, false, []byte("first message")))
	r.flush()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream never reached the upstream")
	}
	r.must(r.fr.WriteRSTStream(1, http2.ErrCodeCancel))
	r.flush()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the upstream's request ran to its end: the client's reset did not reach it")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream's request was not cancelled")
	}
}
