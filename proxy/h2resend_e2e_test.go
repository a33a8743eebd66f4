package proxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// refusingH2Upstream is an h2c upstream written with the frame layer: it
// refuses the first stream it is sent (RST_STREAM REFUSED_STREAM: not
// processed, RFC 9113 §8.7) and answers every later one 200 "ok". streams
// counts the requests it got.
func refusingH2Upstream(t *testing.T) (addr string, streams *atomic.Int32) {
	t.Helper()
	streams = new(atomic.Int32)
	return testserver.ServeTCP(t, func(c net.Conn) { serveRefusingH2(c, streams) }), streams
}

func serveRefusingH2(c net.Conn, streams *atomic.Int32) {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if fr.WriteSettings() != nil {
		return
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() && fr.WriteSettingsAck() != nil {
				return
			}
		case *http2.MetaHeadersFrame:
			if streams.Add(1) == 1 {
				if fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream) != nil {
					return
				}
				continue
			}
			hb.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "2"})
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true}) != nil ||
				fr.WriteData(f.StreamID, true, []byte("ok")) != nil {
				return
			}
		}
	}
}

// A request to an HTTP/2 cluster whose stream the upstream refused (not
// processed) is sent again by weft's HTTP/2 client on its own, as the
// HTTP/1.1 pool sends again a request a stale connection lost: counted in
// weft_upstream_pooled_conn_retries_total, not as a retry of the route's
// policy, and not fed to outlier detection; the client gets the answer.
func TestRefusedH2StreamSentAgainIsCounted(t *testing.T) {
	up, streams := refusingH2Upstream(t)
	cfg := strings.Replace(pooledConnConfig, `endpoints: [{address: "{{up}}"}]`, `endpoints: [{address: "{{up}}"}]
    protocol: http2`, 1)
	p, url := startProxy(t, cfg, map[string]string{"up": up})
	c := &fasthttp.Client{}
	t.Cleanup(c.CloseIdleConnections)
	if st, body, _ := get(t, c, url+"/x"); st != 200 || body != "ok" {
		t.Fatalf("GET: %d %q, want 200 ok", st, body)
	}
	if n := streams.Load(); n != 2 {
		t.Fatalf("the upstream got %d streams, want 2 (the refused one, then the one it answered)", n)
	}
	s := readPooledStats(t, p)
	if s.retried != 1 || s.policyRetries != 0 || s.failures != 0 {
		t.Fatalf("%v requests sent again, %v route-policy retries, %v failures fed to outlier detection: want 1, 0, 0",
			s.retried, s.policyRetries, s.failures)
	}
}
